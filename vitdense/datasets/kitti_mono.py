"""KITTI object (monocular 3D) loader reading the official on-disk layout.

``{data_root}/ImageSets/{split}.txt``, ``training/`` or flat
``image_2/*.png``, ``label_2/*.txt`` (15 fields, a 16th score field is
accepted) and ``calib/*.txt`` (P0-P3, R0_rect, Tr_velo_to_cam,
Tr_imu_to_velo), exactly as in the KITTI devkit. mmdet3d, which has the
usual loader, caps mmdet < 3.3, so vitdense reads the files itself.

Boxes follow the vitdense KITTI contract: ``(x, y, z, l, h, w, ry)`` in the
rectified camera frame with (x, y, z) the bottom centre (mmdet3d's
``CameraInstance3DBoxes`` order; label files store ``h w l x y z ry``).
"""
import os.path as osp
from typing import Dict, List

import numpy as np
from mmengine.dataset import BaseDataset

from vitdense.registry import DATASETS

from .coco import check_dataset_files

__all__ = ['KittiMonoDataset', 'parse_kitti_calib', 'parse_kitti_label',
           'kitti_eval_annotation']

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


def kitti_eval_annotation(objects: List[dict]) -> Dict[str, np.ndarray]:
    """Objects of one label file (:func:`parse_kitti_label`) in the
    annotation format of the official evaluator (``get_label_anno`` of
    traveller59's ``kitti_common.py``): every object, DontCare included,
    ``dimensions`` reordered from the file's h, w, l to l, h, w, and
    ``score`` zeros."""
    count = len(objects)
    return {
        'name': np.array([obj['type'] for obj in objects], dtype=str),
        'truncated': np.array([obj['truncated'] for obj in objects],
                              np.float64),
        'occluded': np.array([obj['occluded'] for obj in objects], np.int64),
        'alpha': np.array([obj['alpha'] for obj in objects], np.float64),
        'bbox': np.array([obj['bbox'] for obj in objects],
                         np.float64).reshape(count, 4),
        'dimensions': np.array([obj['dimensions'] for obj in objects],
                               np.float64).reshape(count, 3)[:, [2, 0, 1]],
        'location': np.array([obj['location'] for obj in objects],
                             np.float64).reshape(count, 3),
        'rotation_y': np.array([obj['rotation_y'] for obj in objects],
                               np.float64),
        'score': np.zeros(count, np.float64)}


@DATASETS.register_module()
class KittiMonoDataset(BaseDataset):
    """KITTI object detection from camera 2 (monocular 3D).

    Each data info holds ``img_path``, ``sample_id``, ``cam2img`` (the 3x4
    P2 of the calib file), ``calib`` (all its matrices) and ``instances``,
    one per label line: ``bbox`` (x1, y1, x2, y2), ``bbox_label`` (index in
    ``metainfo['classes']``, -1 for DontCare and other types), ``bbox_3d``
    (x, y, z, l, h, w, ry; rectified camera frame, bottom centre),
    ``alpha``, ``truncated``, ``occluded``, ``ignore_flag`` (1 for DontCare
    and types outside the classes) and ``name`` (the type in the file).
    With labels it also holds ``eval_ann_info``, the whole label file in
    the official evaluator's format (:func:`kitti_eval_annotation`).

    The classes are the metainfo's: the official MonoDETR/MonoDINO-DETR
    config trains on ``('Car',)`` (its ``writelist``), the full KITTI
    benchmark on the three below.

    Args:
        split (str): name of the ``ImageSets/{split}.txt`` file.
        data_prefix (dict): folders of ``img``, ``calib`` and ``label``.
            Without a ``label`` key the split is unlabelled (the KITTI
            test set, ``testing/`` has no ``label_2``): no instances and no
            ``eval_ann_info``. A listed file that is missing raises
            ``FileNotFoundError`` naming it.
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
        name = type(self).__name__
        split_file = osp.join(self.data_root, 'ImageSets', f'{self.split}.txt')
        for key in ('img', 'calib'):
            if key not in self.data_prefix:
                raise KeyError(f'{name}: data_prefix needs an "{key}" '
                               f'folder, got {self.data_prefix}')
        folders = {'split file': split_file,
                   'image folder': self.data_prefix['img'],
                   'calib folder': self.data_prefix['calib'],
                   'label folder': self.data_prefix.get('label')}
        check_dataset_files(name, self.data_root, folders, 'kitti')
        with open(split_file) as f:
            sample_ids = [line.strip() for line in f if line.strip()]
        classes = list(self.metainfo['classes'])
        data_list = []
        for sample_id in sample_ids:
            img_path = self._sample_file('img', sample_id, '.png', split_file)
            calib = parse_kitti_calib(
                self._sample_file('calib', sample_id, '.txt', split_file))
            info = {'img_path': img_path, 'sample_id': sample_id,
                    'cam2img': calib['P2'], 'calib': calib, 'instances': []}
            if 'label' in self.data_prefix:
                objects = parse_kitti_label(self._sample_file(
                    'label', sample_id, '.txt', split_file))
                info['instances'] = [
                    self._instance(obj, classes) for obj in objects]
                info['eval_ann_info'] = kitti_eval_annotation(objects)
            data_list.append(info)
        return data_list

    def _sample_file(self, key: str, sample_id: str, suffix: str,
                     split_file: str) -> str:
        path = osp.join(self.data_prefix[key], sample_id + suffix)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'{type(self).__name__}: {path} does not exist (sample '
                f'{sample_id!r} of {split_file})')
        return path

    @staticmethod
    def _instance(obj: dict, classes: List[str]) -> dict:
        known = obj['type'] in classes
        h, w, l = obj['dimensions']
        return {'bbox': obj['bbox'],
                'bbox_label': classes.index(obj['type']) if known else -1,
                'bbox_3d': obj['location'] + [l, h, w, obj['rotation_y']],
                'alpha': obj['alpha'], 'truncated': obj['truncated'],
                'occluded': obj['occluded'], 'ignore_flag': 0 if known else 1,
                'name': obj['type']}
