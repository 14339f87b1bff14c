from .coco import (ValidatedCocoDataset, ValidatedCocoPanopticDataset,
                   check_dataset_files)
from .imagenet_folder import ImageNetFolderDataset
from .kitti_mono import (KittiMonoDataset, kitti_eval_annotation,
                         parse_kitti_calib, parse_kitti_label)
from .transforms import *  # noqa: F401,F403

__all__ = [
    'ValidatedCocoDataset', 'ValidatedCocoPanopticDataset',
    'check_dataset_files', 'KittiMonoDataset', 'kitti_eval_annotation',
    'parse_kitti_calib', 'parse_kitti_label', 'ImageNetFolderDataset'
]
