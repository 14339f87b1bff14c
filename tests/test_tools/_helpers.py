"""Running the command-line tools on the tiny test config."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_CONFIG = osp.join(REPO_ROOT, 'tests', 'data', 'configs',
                       'tiny_dino_shapes.py')


def data_options(coco_root: str) -> list:
    """--cfg-options pointing every dataset and evaluator at ``coco_root``."""
    root = coco_root.rstrip('/') + '/'
    return [f'train_dataloader.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}',
            f'val_evaluator.ann_file={root}annotations/instances_val.json',
            f'test_evaluator.ann_file={root}annotations/instances_val.json']


def tool_env() -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO_ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env.setdefault('OMP_NUM_THREADS', '1')
    return env


def run_tool(args: list, timeout: int = 600, check: bool = True):
    result = subprocess.run([sys.executable] + args, cwd=REPO_ROOT,
                            env=tool_env(), capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f'{args} failed ({result.returncode}):\n'
                             f'{result.stdout[-3000:]}\n{result.stderr[-5000:]}')
    return result


def scalars(work_dir: str) -> list:
    """All records of every run's vis_data/scalars.json, oldest run first."""
    records = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records
