"""CPU DETR training step time under different memory allocators.

Runs ``benchmark_detr.py`` once per allocator setting, in fresh processes,
in alternating rounds (so a slow phase of the machine hits every setting),
and prints each model's median train ms/step, RSS rise and page faults per
step, with the step time as a ratio of glibc's default measured in the same
run. Settings:

- ``glibc``: glibc's allocator (``VITDENSE_TCMALLOC=0``);
- ``glibc-tuned``: ``MALLOC_MMAP_THRESHOLD_`` at its 64-bit maximum
  (32 MiB) and ``MALLOC_TRIM_THRESHOLD_`` 8 GiB;
- ``glibc-no-mmap``: ``MALLOC_MMAP_MAX_=0`` (every block from the heap) and
  ``MALLOC_TRIM_THRESHOLD_`` 8 GiB;
- ``jemalloc``: ``LD_PRELOAD`` of Debian's ``libjemalloc2``;
- ``tcmalloc``: Debian's ``libtcmalloc-minimal4``, which the tools preload
  themselves (:func:`vitdense.utils.preload_tcmalloc`).

Example::

    python tools/analysis_tools/benchmark_allocators.py --rounds 2 -- \\
        --threads 2 --iters 3 --warmup 1
"""
import argparse
import glob
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from typing import Dict, List, Optional

from vitdense.utils import find_tcmalloc

BENCHMARK = osp.join(osp.dirname(osp.abspath(__file__)), 'benchmark_detr.py')
GLIBC = {'VITDENSE_TCMALLOC': '0'}


def _library(pattern: str) -> Optional[str]:
    for folder in ('/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu',
                   '/usr/lib64', '/usr/lib', '/usr/local/lib'):
        found = sorted(glob.glob(osp.join(folder, pattern)))
        if found:
            return found[0]
    return None


def settings() -> Dict[str, Optional[dict]]:
    """name -> extra environment, or None if unavailable."""
    tuned = dict(GLIBC, MALLOC_TRIM_THRESHOLD_=str(8 * 2**30))
    jemalloc = _library('libjemalloc.so.2')
    return {
        'glibc': GLIBC,
        'glibc-tuned': dict(tuned, MALLOC_MMAP_THRESHOLD_=str(32 * 2**20)),
        'glibc-no-mmap': dict(tuned, MALLOC_MMAP_MAX_='0'),
        'jemalloc': dict(GLIBC, LD_PRELOAD=jemalloc) if jemalloc else None,
        'tcmalloc': {} if find_tcmalloc() else None,
    }


ROW = re.compile(r'^\| (?P<model>[^|]+?) \| [\d.]+ \| (?P<ms>[\d.]+) \| '
                 r'[\d.]+x \| (?P<mb>[-\d.na]+) \| (?P<faults>[\d.]+) \|')


def run_once(env: dict, args: List[str]) -> dict:
    """model -> (ms/step, MB, faults/step) of one benchmark_detr run."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ('LD_PRELOAD', 'VITDENSE_TCMALLOC_PRELOADED')}
    full_env.update(env)
    result = subprocess.run([sys.executable, BENCHMARK] + args,
                            env=full_env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f'benchmark_detr.py failed with {env}:\n'
                           f'{result.stderr[-3000:]}')
    rows = {}
    for line in result.stdout.splitlines():
        match = ROW.match(line)
        if match:
            rows[match['model']] = (float(match['ms']), match['mb'],
                                    float(match['faults']))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=1,
                        help='runs of every setting, interleaved')
    parser.add_argument('--only', nargs='+', help='settings to run')
    parser.add_argument('benchmark_args', nargs=argparse.REMAINDER,
                        help='after "--": arguments of benchmark_detr.py')
    args = parser.parse_args()
    extra = [a for a in args.benchmark_args if a != '--']
    chosen = {name: s for name, s in settings().items()
              if s is not None and (not args.only or name in args.only)}
    missing = [n for n, s in settings().items() if s is None]
    if missing:
        print(f'not installed, skipped: {", ".join(missing)}')
    results = defaultdict(lambda: defaultdict(list))
    for round_index in range(args.rounds):
        for name, env in chosen.items():
            print(f'round {round_index + 1}/{args.rounds}: {name} ...',
                  flush=True)
            for model, row in run_once(env, extra).items():
                results[model][name].append(row)
    print(f'\nbenchmark_detr.py {" ".join(extra)}; median over '
          f'{args.rounds} round(s)\n')
    print('| model | allocator | train ms/step | vs glibc | '
          'peak MB/step (RSS rise) | page faults/step |')
    print('|---|---|---:|---:|---:|---:|')
    for model, by_setting in results.items():
        base = statistics.median(r[0] for r in by_setting['glibc']) \
            if 'glibc' in by_setting else None
        for name, rows in by_setting.items():
            ms = statistics.median(r[0] for r in rows)
            ratio = f'{base / ms:.2f}x faster' if base else '-'
            print(f'| {model} | {name} | {ms:.0f} | {ratio} | '
                  f'{rows[-1][1]} | {statistics.median(r[2] for r in rows):.0f} |')


if __name__ == '__main__':
    main()
