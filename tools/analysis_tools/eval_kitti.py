"""Evaluate a folder of KITTI predictions against KITTI labels on the CPU.

    python tools/analysis_tools/eval_kitti.py \
        data/kitti/training/label_2 work_dirs/x/submission \
        --split-file data/kitti/ImageSets/val.txt --out results.json

``PRED_DIR`` is the standard submission layout (one ``{sample_id}.txt`` per
frame, 16 fields with the score), written by ``tools/test.py`` with
``--cfg-options test_evaluator.format_only=True
test_evaluator.outfile_prefix=DIR`` or by any other codebase (MonoDETR's
``outputs/data``). A frame without a prediction file has no detections.
Prints the devkit's table and writes the flat ``kitti/...`` keys as JSON.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import List, Optional

from vitdense.evaluation.functional import kitti_eval, read_kitti_label_dir

EVAL_TYPES = ('bbox', 'aos', 'bev', '3d')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='KITTI 3D detection AP (official devkit numbers, CPU)')
    parser.add_argument('gt_dir', help='ground-truth label_2 folder')
    parser.add_argument('pred_dir', help='folder of prediction files')
    parser.add_argument(
        '--split-file',
        help='frames to evaluate, one id per line (ImageSets/val.txt); '
        'default: every .txt of gt_dir')
    parser.add_argument('--classes', nargs='+',
                        default=['Car', 'Pedestrian', 'Cyclist'])
    parser.add_argument('--metric', nargs='+', default=list(EVAL_TYPES),
                        choices=EVAL_TYPES, help='evaluated AP types')
    parser.add_argument('--out', help='write the results to this JSON file')
    return parser.parse_args(argv)


def sample_ids_of(gt_dir: str, pred_dir: str,
                  split_file: Optional[str]) -> List[str]:
    """The evaluated frame ids; every one must have a ground-truth file and
    at least one must have a prediction file."""
    for name, folder in (('ground-truth', gt_dir), ('prediction', pred_dir)):
        if not osp.isdir(folder):
            raise FileNotFoundError(f'{name} folder {folder} does not exist')
    if split_file is not None:
        if not osp.isfile(split_file):
            raise FileNotFoundError(f'split file {split_file} does not exist')
        with open(split_file) as f:
            ids = [line.strip() for line in f if line.strip()]
        if not ids:
            raise ValueError(f'split file {split_file} lists no frames')
    else:
        ids = sorted(osp.splitext(name)[0] for name in os.listdir(gt_dir)
                     if name.endswith('.txt'))
        if not ids:
            raise ValueError(f'ground-truth folder {gt_dir} has no .txt '
                             'label files')
    missing = [i for i in ids if not osp.isfile(osp.join(gt_dir, i + '.txt'))]
    if missing:
        raise FileNotFoundError(
            f'{len(missing)} of {len(ids)} frames have no label file in '
            f'{gt_dir}: {", ".join(missing[:5])}'
            f'{", ..." if len(missing) > 5 else ""}')
    if not any(osp.isfile(osp.join(pred_dir, i + '.txt')) for i in ids):
        raise FileNotFoundError(
            f'prediction folder {pred_dir} has no file of the {len(ids)} '
            f'evaluated frames (e.g. {ids[0]}.txt)')
    return ids


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    ids = sample_ids_of(args.gt_dir, args.pred_dir, args.split_file)
    without = sum(not osp.isfile(osp.join(args.pred_dir, i + '.txt'))
                  for i in ids)
    if without:
        print(f'{without} of {len(ids)} frames have no prediction file '
              '(no detections)', file=sys.stderr)
    table, results = kitti_eval(
        read_kitti_label_dir(args.gt_dir, ids),
        read_kitti_label_dir(args.pred_dir, ids),
        classes=tuple(args.classes), eval_types=tuple(args.metric))
    print(table)
    results = {f'kitti/{key}': value for key, value in results.items()}
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)
        print(f'results of {len(ids)} frames written to {args.out}')
    return results


if __name__ == '__main__':
    main()
