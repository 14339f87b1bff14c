"""Write the embedded datasets in real on-disk formats.

    python tools/dataset_converters/make_synthetic.py coco   data/coco_shapes
    python tools/dataset_converters/make_synthetic.py ade20k data/ade20k_shapes
    python tools/dataset_converters/make_synthetic.py kitti  data/kitti_shapes
    python tools/dataset_converters/make_synthetic.py imagenet \
        data/imagenet_shapes

``imagenet`` writes single-shape classification images in ImageNet's folder
layout with ``meta/{train,val,classes}.txt`` and the BPE vocabulary of the
tiny text encoder in ``meta/bpe/`` (``vocab.json``, ``merges.txt``).

``--num-train``/``--num-val`` set the size of any kind, e.g. a few hundred
KITTI frames: ``kitti data/kitti_400 --num-train 300 --num-val 100``;
``--scale`` is the KITTI image size relative to the real 1242x375 (P2 is
scaled with it; default 0.25, ``--scale 1`` for full-size frames).

Importable too: ``from vitdense.datasets.synthetic import make_coco_shapes``.
An existing complete dataset is kept unless ``--force`` is given; an
interrupted one is rewritten. A non-empty folder that this tool did not
write (no ``.vitdense-synthetic``/``.complete`` marker) is refused, with or
without ``--force``: it is never deleted.
"""
import argparse
import sys
import time

from vitdense.datasets.synthetic import (dataset_state, make_ade20k_shapes,
                                         make_coco_shapes,
                                         make_imagenet_shapes,
                                         make_kitti_shapes)

MAKERS = {'coco': make_coco_shapes, 'ade20k': make_ade20k_shapes,
          'kitti': make_kitti_shapes, 'imagenet': make_imagenet_shapes}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('kind', choices=sorted(MAKERS))
    parser.add_argument('root', help='output folder (the config data_root)')
    parser.add_argument('--num-train', type=int, help='training images')
    parser.add_argument('--num-val', type=int, help='validation images')
    parser.add_argument('--scale', type=float,
                        help='kitti only: image size relative to 1242x375')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--force', action='store_true',
                        help='rewrite a complete dataset that this tool '
                        'wrote (never a folder it did not write)')
    return parser.parse_args()


def main():
    args = parse_args()
    if dataset_state(args.root) == 'complete' and not args.force:
        print(f'{args.kind} data already at {args.root} (use --force to '
              'rewrite)')
        return
    kwargs = {'seed': args.seed}
    if args.num_train is not None:
        kwargs['num_train'] = args.num_train
    if args.num_val is not None:
        kwargs['num_val'] = args.num_val
    if args.scale is not None:
        if args.kind != 'kitti':
            sys.exit('error: --scale applies to kitti only')
        kwargs['scale'] = args.scale
    start = time.time()
    print(f'writing {args.kind}-format data to {args.root} ...')
    try:
        MAKERS[args.kind](args.root, **kwargs)
    except FileExistsError as error:
        sys.exit(f'error: {error}')
    print(f'done in {time.time() - start:.1f} s')


if __name__ == '__main__':
    main()
