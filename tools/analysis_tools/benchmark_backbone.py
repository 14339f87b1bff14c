"""Benchmark backbone inference: images/s and peak memory per variant.

Every row is ``(registered type, arch)``; add a family by extending
``BACKBONES`` (or pass ``--model Type --arch a b`` for any backbone
registered in vitdense whose constructor takes ``arch``).

Examples::

    python tools/analysis_tools/benchmark_backbone.py --model RMT CrossFormer
    python tools/analysis_tools/benchmark_backbone.py --model RMT --arch t s \
        --sizes 224 512 --iters 10 --device cuda

CPU peak memory is the rise of the process's resident-set high-water mark
during the timed forwards, after returning freed heap pages to the system
(glibc ``malloc_trim``) and resetting the mark (``/proc/self/clear_refs``):
activations and workspaces on top of the resident weights (Linux only). CUDA
peak memory is ``torch.cuda.max_memory_allocated`` (weights included).
"""
import argparse
import time
from typing import Dict, List

import torch

from vitdense.utils.benchmark import (add_device_args, reset_peak_rss,
                                      setup_device, status_kb)

#: type -> archs benchmarked by default
BACKBONES: Dict[str, List[str]] = {
    'RMT': ['t', 's', 'b', 'l'],
    'CrossFormer': ['t', 's', 'b', 'l', 'pp-s', 'pp-b', 'pp-l', 'pp-h'],
}


def benchmark(model: torch.nn.Module, size: int, batch: int, iters: int,
              warmup: int, device: str) -> dict:
    """Time ``iters`` forwards of a ``batch x 3 x size x size`` input."""
    x = torch.randn(batch, 3, size, size, device=device)
    sync = torch.cuda.synchronize if device.startswith('cuda') else (
        lambda: None)
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        sync()
        if device.startswith('cuda'):
            torch.cuda.reset_peak_memory_stats()
            base = None
        else:
            base = status_kb('VmRSS') if reset_peak_rss() else None
        start = time.perf_counter()
        for _ in range(iters):
            model(x)
        sync()
        elapsed = time.perf_counter() - start
    if device.startswith('cuda'):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    elif base is not None:
        peak_mb = (status_kb('VmHWM') - base) / 1024
    else:
        peak_mb = float('nan')
    return dict(fps=batch * iters / elapsed, peak_mb=peak_mb)


def parse_args():
    parser = argparse.ArgumentParser(description='Benchmark backbones.')
    parser.add_argument('--model', nargs='+', default=list(BACKBONES),
                        help='registered backbone types')
    parser.add_argument('--arch', nargs='+', default=None,
                        help='archs to run (default: all known for a type)')
    parser.add_argument('--sizes', nargs='+', type=int, default=[224, 512])
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    add_device_args(parser)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import vitdense.models  # noqa: F401  (registers the backbones)
    from vitdense.registry import MODELS
    setup_device(args)

    mem = 'peak MiB (forward)' if args.device == 'cpu' else \
        'peak MiB (allocated)'
    print(f'device: {args.device}, batch {args.batch}, fp32, '
          f'{args.iters} timed iterations after {args.warmup} warm-up, '
          f'{torch.get_num_threads()} threads, torch {torch.__version__}\n')
    header = ['backbone', 'arch', 'params (M)'] + [
        f'{s}² img/s' for s in args.sizes] + [f'{s}² {mem}'
                                              for s in args.sizes]
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for model_type in args.model:
        archs = args.arch or BACKBONES.get(model_type)
        if not archs:
            raise SystemExit(f'no archs known for {model_type}; pass --arch')
        for arch in archs:
            model = MODELS.build(dict(type=model_type, arch=arch))
            model = model.to(args.device).eval()
            params = sum(p.numel() for p in model.parameters()) / 1e6
            results = [
                benchmark(model, s, args.batch, args.iters, args.warmup,
                          args.device) for s in args.sizes
            ]
            row = [model_type, arch, f'{params:.1f}'] + [
                f'{r["fps"]:.2f}' for r in results
            ] + [f'{r["peak_mb"]:.0f}' for r in results]
            print('| ' + ' | '.join(row) + ' |', flush=True)
            del model


if __name__ == '__main__':
    main()
