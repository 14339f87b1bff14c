"""KITTI object (monocular 3D) loader reading the official on-disk layout.

``{data_root}/ImageSets/{split}.txt``, ``training/`` or flat
``image_2/*.png``, ``label_2/*.txt`` (15 fields, a 16th score field is
accepted) and ``calib/*.txt`` (P0-P3, R0_rect, Tr_velo_to_cam,
Tr_imu_to_velo), exactly as in the KITTI devkit. mmdet3d, which has the
usual loader, caps mmdet < 3.3, so vitdense reads the files itself.
"""
import os.path as osp
from typing import Dict, List

import numpy as np
from mmengine.dataset import BaseDataset

from vitdense.registry import DATASETS

from .coco import check_dataset_files

__all__ = ['KittiMonoDataset', 'parse_kitti_calib', 'parse_kitti_label']

KITTI_LABEL_FIELDS = 15


def parse_kitti_calib(path: str) -> Dict[str, np.ndarray]:
    """Read a KITTI calib file: P0-P3 as 3x4, R0_rect as 3x3, the rigid
    transforms as 3x4."""
    shapes = {'R0_rect': (3, 3)}
    calib = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            key, _, values = line.partition(':')
            try:
                numbers = np.array([float(v) for v in values.split()])
                calib[key] = numbers.reshape(shapes.get(key, (3, 4)))
            except ValueError as error:
                raise ValueError(f'{path}:{number}: malformed calibration '
                                 f'line {line.strip()!r}') from error
    for key in ('P2', 'R0_rect'):
        if key not in calib:
            raise ValueError(f'{path}: calibration has no {key}')
    return calib


def parse_kitti_label(path: str) -> List[dict]:
    """Read a KITTI label_2 file into one dict per object."""
    objects = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) not in (KITTI_LABEL_FIELDS, KITTI_LABEL_FIELDS + 1):
                raise ValueError(
                    f'{path}:{number}: expected {KITTI_LABEL_FIELDS} fields '
                    f'(16 with score), got {len(fields)}')
            try:
                values = [float(v) for v in fields[1:]]
            except ValueError as error:
                raise ValueError(f'{path}:{number}: non-numeric field in '
                                 f'{line.strip()!r}') from error
            objects.append({
                'type': fields[0], 'truncated': values[0],
                'occluded': int(values[1]), 'alpha': values[2],
                'bbox': values[3:7], 'dimensions': values[7:10],  # h, w, l
                'location': values[10:13], 'rotation_y': values[13],
                'score': values[14] if len(values) > 14 else None})
    return objects


@DATASETS.register_module()
class KittiMonoDataset(BaseDataset):
    """KITTI object detection from camera 2 (monocular 3D).

    Each instance carries ``bbox`` (x1, y1, x2, y2), ``bbox_label``,
    ``bbox_3d`` (x, y, z, h, w, l, rotation_y in the rectified camera frame,
    location at the bottom centre as in KITTI), ``alpha``, ``truncated``,
    ``occluded`` and ``ignore_flag`` (``DontCare`` and classes outside
    ``metainfo['classes']``). ``cam2img`` is the 3x4 P2 matrix.

    Args:
        split (str): name of the ``ImageSets/{split}.txt`` file.
        data_prefix (dict): folders of ``img``, ``label`` and ``calib``.
    """
    METAINFO = {'classes': ('Pedestrian', 'Cyclist', 'Car'),
                'palette': [(0, 200, 0), (0, 0, 200), (200, 0, 0)]}

    def __init__(self,
                 split: str = 'train',
                 data_prefix: dict = dict(
                     img='image_2', label='label_2', calib='calib'),
                 **kwargs):
        self.split = split
        super().__init__(ann_file='', data_prefix=data_prefix, **kwargs)

    def load_data_list(self) -> List[dict]:
        split_file = osp.join(self.data_root, 'ImageSets', f'{self.split}.txt')
        check_dataset_files(
            type(self).__name__, self.data_root,
            {'split file': split_file,
             'image folder': self.data_prefix['img'],
             'calib folder': self.data_prefix['calib']}, 'kitti')
        with open(split_file) as f:
            sample_ids = [line.strip() for line in f if line.strip()]
        classes = list(self.metainfo['classes'])
        data_list = []
        for sample_id in sample_ids:
            calib = parse_kitti_calib(
                osp.join(self.data_prefix['calib'], sample_id + '.txt'))
            label_path = osp.join(self.data_prefix.get('label', ''),
                                  sample_id + '.txt')
            objects = parse_kitti_label(label_path) \
                if osp.exists(label_path) else []
            instances = []
            for obj in objects:
                known = obj['type'] in classes
                instances.append({
                    'bbox': obj['bbox'],
                    'bbox_label': classes.index(obj['type']) if known else -1,
                    'bbox_3d': obj['location'] + obj['dimensions'] +
                    [obj['rotation_y']],
                    'alpha': obj['alpha'], 'truncated': obj['truncated'],
                    'occluded': obj['occluded'],
                    'ignore_flag': 0 if known else 1})
            data_list.append({
                'img_path': osp.join(self.data_prefix['img'],
                                     sample_id + '.png'),
                'sample_id': sample_id, 'cam2img': calib['P2'],
                'calib': calib, 'instances': instances})
        return data_list
