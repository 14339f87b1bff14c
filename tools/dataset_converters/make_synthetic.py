"""Write the embedded datasets in real on-disk formats.

    python tools/dataset_converters/make_synthetic.py coco   data/coco_shapes
    python tools/dataset_converters/make_synthetic.py ade20k data/ade20k_shapes
    python tools/dataset_converters/make_synthetic.py kitti  data/kitti_shapes

Importable too: ``from vitdense.datasets.synthetic import make_coco_shapes``.
An existing complete dataset is kept unless ``--force`` is given.
"""
import argparse
import os.path as osp
import shutil
import time

from vitdense.datasets.synthetic import (make_ade20k_shapes, make_coco_shapes,
                                         make_kitti_shapes)

MAKERS = {'coco': make_coco_shapes, 'ade20k': make_ade20k_shapes,
          'kitti': make_kitti_shapes}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('kind', choices=sorted(MAKERS))
    parser.add_argument('root', help='output folder (the config data_root)')
    parser.add_argument('--num-train', type=int, help='training images')
    parser.add_argument('--num-val', type=int, help='validation images')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--force', action='store_true',
                        help='delete and rewrite an existing dataset')
    return parser.parse_args()


def main():
    args = parse_args()
    if osp.exists(osp.join(args.root, '.complete')) and not args.force:
        print(f'{args.kind} data already at {args.root} (use --force to '
              'rewrite)')
        return
    if osp.exists(args.root):
        shutil.rmtree(args.root)
    kwargs = {'seed': args.seed}
    if args.num_train is not None:
        kwargs['num_train'] = args.num_train
    if args.num_val is not None:
        kwargs['num_val'] = args.num_val
    start = time.time()
    print(f'writing {args.kind}-format data to {args.root} ...')
    MAKERS[args.kind](args.root, **kwargs)
    print(f'done in {time.time() - start:.1f} s')


if __name__ == '__main__':
    main()
