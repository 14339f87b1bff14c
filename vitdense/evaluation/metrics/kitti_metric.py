"""KITTI monocular 3D detection metric and submission writer.

Predictions (``pred_instances_3d`` in the camera frame of the original
image, see :func:`prediction_to_kitti_anno`) become the official
``kitti_common`` annotation dicts and are scored by
:func:`vitdense.evaluation.functional.kitti_eval` (the devkit's AP for 2D,
AOS, BEV and 3D at both overlap sets, R11 and R40). Written as its own
metric because mmdet3d's ``KittiMetric`` needs mmdet3d (which caps mmdet
below vitdense's) and its LiDAR/pickle info files.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from vitdense.datasets.kitti_mono import kitti_eval_annotation
from vitdense.registry import METRICS
from vitdense.structures import box3d_corners, project_to_image, wrap_angle

from ..functional import kitti_eval, round_kitti_anno, write_kitti_label_file

__all__ = ['KittiMetric', 'prediction_to_kitti_anno']

EVAL_TYPES = ('bbox', 'aos', 'bev', '3d')


def _numpy(value, dtype=np.float64) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def prediction_to_kitti_anno(pred: dict, classes: Sequence[str],
                             cam2img: Optional[np.ndarray] = None,
                             img_shape: Optional[Sequence[int]] = None,
                             score_thr: float = 0.0) -> Dict[str, np.ndarray]:
    """Convert one frame's ``pred_instances_3d`` to a ``kitti_common``
    annotation dict with scores.

    Args:
        pred (dict): ``bboxes_3d`` (M, 7) ``(x, y, z, l, h, w, ry)`` in the
            camera frame of the original image, ``scores_3d`` (M,),
            ``labels_3d`` (M,) indices into ``classes``; optional ``alpha``
            (M,) and 2D ``bboxes`` (M, 4) in original-image pixels.
        classes (Sequence[str]): names of the label indices.
        cam2img (np.ndarray, optional): the 3x4 P2 of the original image;
            needed when ``bboxes`` or ``alpha`` are absent.
        img_shape (Sequence[int], optional): (H, W) of the original image,
            the 2D boxes projected from 3D are clipped to it.
        score_thr (float): keep predictions with ``score >= score_thr``.

    Without ``bboxes`` the 2D box is the extent of the 8 projected corners
    clipped to ``[0, W] x [0, H]`` (mmdet3d's ``bbox2result_kitti``).
    Without ``alpha``: ``alpha = ry - arctan2(u - cu, fu)`` with ``u`` the
    column of the projected 3D box centre, i.e. MonoDETR's
    ``Calibration.ry2alpha`` (which MonoDETR applies to its 2D box centre),
    wrapped to [-pi, pi). Truncation and occlusion are unknown: -1.
    Floats are rounded to the 4 decimals of the submission files
    (:func:`~vitdense.evaluation.functional.kitti_files.round_kitti_anno`),
    so the metric's numbers are those of its written submission.
    """
    boxes = _numpy(pred['bboxes_3d']).reshape(-1, 7)
    scores = _numpy(pred['scores_3d']).reshape(-1)
    labels = _numpy(pred['labels_3d'], np.int64).reshape(-1)
    keep = scores >= score_thr
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    if not len(boxes):
        return kitti_eval_annotation([])
    if labels.min() < 0 or labels.max() >= len(classes):
        raise ValueError(f'labels_3d {sorted(set(labels.tolist()))} outside '
                         f'the {len(classes)} classes {tuple(classes)}')
    if ('bboxes' not in pred or 'alpha' not in pred) and cam2img is None:
        raise ValueError('predictions without 2D `bboxes` or `alpha` need '
                         'the `ori_cam2img` (P2) of the sample to derive '
                         'them')
    if 'bboxes' in pred:
        bboxes = _numpy(pred['bboxes']).reshape(-1, 4)[keep]
    else:
        pixels = project_to_image(box3d_corners(boxes),
                                  _numpy(cam2img)).reshape(-1, 8, 2)
        bboxes = np.concatenate([pixels.min(1), pixels.max(1)], axis=1)
        if img_shape is not None:
            height, width = img_shape[:2]
            bboxes = np.clip(bboxes, 0, [width, height, width, height])
    if 'alpha' in pred:
        alpha = _numpy(pred['alpha']).reshape(-1)[keep]
    else:
        P = _numpy(cam2img).reshape(3, 4)
        centres = boxes[:, :3].copy()
        centres[:, 1] -= boxes[:, 4] / 2
        u = project_to_image(centres, P)[:, 0]
        alpha = wrap_angle(boxes[:, 6] - np.arctan2(u - P[0, 2], P[0, 0]))
    num = len(boxes)
    return round_kitti_anno({
        'name': np.array([classes[i] for i in labels]),
        'truncated': np.full(num, -1.0),
        'occluded': np.full(num, -1, dtype=np.int64),
        'alpha': alpha, 'bbox': bboxes,
        'dimensions': boxes[:, 3:6], 'location': boxes[:, :3],
        'rotation_y': boxes[:, 6], 'score': scores})


@METRICS.register_module()
class KittiMetric(BaseMetric):
    """KITTI object detection metric (official devkit AP) and submission
    writer for monocular 3D detectors.

    ``process`` reads each data sample's ``pred_instances_3d`` (see
    :func:`prediction_to_kitti_anno`), its ``eval_ann_info`` (the ground
    truth as ``kitti_common`` annotation dict, all objects of the label
    file), ``sample_id``, ``ori_cam2img`` and ``ori_shape``. Keys are
    ``kitti/{Class}_{2D|AOS|BEV|3D}_{easy|moderate|hard}_{R11|R40}`` for the
    strict overlaps and the same with ``_loose`` for the second set, in
    percent as the official table, which is logged.

    Args:
        classes (Sequence[str], optional): names of ``labels_3d`` and the
            evaluated classes; default ``dataset_meta['classes']``.
        metric (str | Sequence[str]): evaluated types among ``'bbox'``,
            ``'aos'``, ``'bev'``, ``'3d'``; default all.
        format_only (bool): only write the KITTI submission (one
            ``{sample_id}.txt`` per frame, 16 fields) to ``outfile_prefix``
            and return ``{}``, as mmdet's metrics do (for the test split,
            which has no labels).
        outfile_prefix (str, optional): folder of the submission files;
            written whenever given (also when evaluating).
        pred_score_thr (float): predictions with a lower score are dropped.
        collect_device (str): as :class:`mmengine.evaluator.BaseMetric`.
        prefix (str): key prefix; default ``'kitti'``.
    """
    default_prefix = 'kitti'

    def __init__(self,
                 classes: Optional[Sequence[str]] = None,
                 metric: Union[str, Sequence[str]] = EVAL_TYPES,
                 format_only: bool = False,
                 outfile_prefix: Optional[str] = None,
                 pred_score_thr: float = 0.0,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix,
                         collect_dir=collect_dir)
        metrics = [metric] if isinstance(metric, str) else list(metric)
        unknown = [m for m in metrics if m not in EVAL_TYPES]
        if unknown or not metrics:
            raise ValueError(f'KittiMetric: metric {metric!r} must be one or '
                             f'more of {EVAL_TYPES}')
        if format_only and not outfile_prefix:
            raise ValueError(
                'KittiMetric: format_only=True writes the KITTI submission '
                'files to `outfile_prefix`, which is not set (e.g. '
                '--cfg-options test_evaluator.outfile_prefix=DIR)')
        self.classes = None if classes is None else tuple(classes)
        self.eval_types = tuple(metrics)
        self.format_only = format_only
        self.outfile_prefix = outfile_prefix
        self.pred_score_thr = pred_score_thr

    def _classes(self) -> tuple:
        if self.classes is not None:
            return self.classes
        if self.dataset_meta and self.dataset_meta.get('classes'):
            return tuple(self.dataset_meta['classes'])
        raise ValueError('KittiMetric needs `classes` or a dataset with '
                         "metainfo['classes']")

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Convert each sample's predictions to an annotation dict and keep
        it with the sample's ground truth and id."""
        classes = self._classes()
        for sample in data_samples:
            sample_id = sample.get('sample_id')
            if sample_id is None and sample.get('img_path'):
                sample_id = osp.splitext(osp.basename(sample['img_path']))[0]
            pred = sample.get('pred_instances_3d')
            if pred is None:
                raise KeyError(f'KittiMetric: sample {sample_id} has no '
                               '`pred_instances_3d`')
            gt = sample.get('eval_ann_info')
            if gt is None and not self.format_only:
                raise KeyError(
                    f'KittiMetric: sample {sample_id} has no `eval_ann_info`'
                    ' (the ground truth); evaluate a split with labels or '
                    'set format_only=True')
            if sample_id is None and self.outfile_prefix:
                raise KeyError('KittiMetric: a sample has neither '
                               '`sample_id` nor `img_path` to name its file')
            pred = prediction_to_kitti_anno(
                pred, classes,
                cam2img=sample.get('ori_cam2img'),
                img_shape=sample.get('ori_shape'),
                score_thr=self.pred_score_thr)
            self.results.append(dict(sample_id=sample_id, pred=pred, gt=gt))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Write the submission (``outfile_prefix``) and/or evaluate."""
        if self.outfile_prefix:
            os.makedirs(self.outfile_prefix, exist_ok=True)
            for result in results:
                write_kitti_label_file(
                    osp.join(self.outfile_prefix,
                             f"{result['sample_id']}.txt"), result['pred'])
            print_log(f'KITTI results of {len(results)} frames written to '
                      f'{self.outfile_prefix}', logger='current')
        if self.format_only:
            return {}
        table, metrics = kitti_eval([r['gt'] for r in results],
                                    [r['pred'] for r in results],
                                    classes=self._classes(),
                                    eval_types=self.eval_types)
        print_log('\n' + table, logger='current')
        return metrics
