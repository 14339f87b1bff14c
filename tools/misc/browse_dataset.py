"""Draw the ground truth after the data pipeline, one picture per sample.

    python tools/misc/browse_dataset.py CONFIG --output-dir DIR [--num 20]

Works for detection (mmdet ``DetLocalVisualizer``), segmentation (mmseg
``SegLocalVisualizer``) and KITTI monocular 3D (vitdense
``KittiMonoVisualizer``: the 3D boxes projected through the input's
``cam2img`` and a bird's-eye view) configs: the config's own ``visualizer``
draws the transformed input that the model would see.
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmengine.utils import ProgressBar

from vitdense.utils import register_all_modules


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file path')
    parser.add_argument('--output-dir', required=True,
                        help='folder the pictures are written to')
    parser.add_argument('--split', default='train',
                        choices=['train', 'val', 'test'])
    parser.add_argument('--num', type=int, default=20,
                        help='how many samples to draw (-1: all)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args()


def _drawable(sample):
    """mmdet keeps boxes/masks in wrapper types its visualizer can't draw."""
    instances = sample.get('gt_instances')
    if instances is None:
        return sample
    from mmdet.structures.bbox import BaseBoxes
    from mmdet.structures.mask import BitmapMasks, PolygonMasks
    if isinstance(instances.get('bboxes'), BaseBoxes):
        instances.bboxes = instances.bboxes.tensor
    if isinstance(instances.get('masks'), (BitmapMasks, PolygonMasks)):
        instances.masks = instances.masks.to_ndarray().astype(bool)
    return sample


def browse(cfg: Config, output_dir: str, split: str = 'train',
           num: int = 20) -> list:
    """Write ``num`` ground-truth pictures to ``output_dir``; return paths."""
    from mmengine.registry import DATASETS, VISUALIZERS
    register_all_modules(init_default_scope=False)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset = DATASETS.build(cfg[f'{split}_dataloader'].dataset)
    visualizer = VISUALIZERS.build(cfg.visualizer)
    visualizer.dataset_meta = dataset.metainfo
    os.makedirs(output_dir, exist_ok=True)
    count = len(dataset) if num < 0 else min(num, len(dataset))
    progress = ProgressBar(count)
    written = []
    for index in range(count):
        item = dataset[index]
        image = item['inputs'].permute(1, 2, 0).numpy()[..., [2, 1, 0]]
        sample = _drawable(item['data_samples'].numpy())
        name = osp.splitext(osp.basename(sample.img_path))[0] + '.png'
        out_file = osp.join(output_dir, name)
        visualizer.add_datasample(name, image, sample, draw_pred=False,
                                  show=False, out_file=out_file)
        written.append(out_file)
        progress.update()
    return written


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    paths = browse(cfg, args.output_dir, args.split, args.num)
    print(f'\nwrote {len(paths)} pictures to {args.output_dir}')


if __name__ == '__main__':
    main()
