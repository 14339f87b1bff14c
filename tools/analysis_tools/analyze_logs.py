"""Plot training curves from mmengine logs, or report training time.

    python tools/analysis_tools/analyze_logs.py plot_curve \
        work_dirs/x/20260101_000000/vis_data/scalars.json \
        --keys loss coco/bbox_mAP --out curves.png
    python tools/analysis_tools/analyze_logs.py cal_train_time scalars.json

Reads the ``vis_data/scalars.json`` files mmengine's ``LocalVisBackend``
writes (one json object per line). Several files are drawn side by side
with ``--legend``. Each key gets its own panel.
"""
import argparse
import json
import os.path as osp
from collections import defaultdict
from typing import Dict, List

import numpy as np


def load_scalars(path: str) -> Dict[str, List[tuple]]:
    """Return ``{key: [(step, value), ...]}`` from a scalars.json file."""
    series = defaultdict(list)
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f'{path}:{number}: not a json line '
                                 f'({error.msg})') from error
            step = record.get('step', record.get('iter', number))
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in (
                        'step', 'iter', 'epoch'):
                    series[key].append((step, float(value)))
    return dict(series)


def plot_curve(logs: List[str], keys: List[str], out: str,
               legend: List[str] = None, title: str = None) -> str:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    all_series = [load_scalars(p) for p in logs]
    legend = legend or [osp.basename(osp.dirname(osp.dirname(p))) or p
                        for p in logs]
    if len(legend) != len(logs):
        raise ValueError('--legend needs one name per log file')
    for key in keys:
        if not any(key in s for s in all_series):
            available = sorted(set().union(*all_series))
            raise KeyError(f'{key!r} is in none of the logs; available keys: '
                           f'{available}')
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 3 * len(keys)),
                             squeeze=False)
    for axis, key in zip(axes[:, 0], keys):
        for name, series in zip(legend, all_series):
            if key in series:
                steps, values = np.array(series[key]).T
                marker = 'o' if len(steps) < 20 else None
                axis.plot(steps, values, label=name, marker=marker)
        axis.set_xlabel('iteration')
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def cal_train_time(logs: List[str]) -> None:
    for path in logs:
        times = [v for _, v in load_scalars(path).get('time', [])]
        if not times:
            print(f'{path}: no "time" entries')
            continue
        times = np.array(times)
        print(f'{path}\n  average iter time: {times.mean():.4f} s/iter, '
              f'slowest {times.max():.4f}, fastest {times.min():.4f}, '
              f'std {times.std():.4f}')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='task', required=True)
    plot = sub.add_parser('plot_curve', help='draw curves to a PNG')
    plot.add_argument('json_logs', nargs='+')
    plot.add_argument('--keys', nargs='+', default=['loss'])
    plot.add_argument('--legend', nargs='+')
    plot.add_argument('--title')
    plot.add_argument('--out', default='curves.png')
    timing = sub.add_parser('cal_train_time', help='average iteration time')
    timing.add_argument('json_logs', nargs='+')
    return parser.parse_args()


def main():
    args = parse_args()
    if args.task == 'plot_curve':
        print('saved', plot_curve(args.json_logs, args.keys, args.out,
                                  args.legend, args.title))
    else:
        cal_train_time(args.json_logs)


if __name__ == '__main__':
    main()
