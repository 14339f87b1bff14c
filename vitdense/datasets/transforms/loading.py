"""mmseg's and mmdet's label loading with checks whose errors name the
label file; mmdet's panoptic loading without panopticapi."""
from typing import Optional

import numpy as np
from mmdet.datasets.transforms import LoadAnnotations as DetLoadAnnotations
from mmdet.datasets.transforms import LoadPanopticAnnotations
from mmdet.structures.mask import BitmapMasks
from mmseg.datasets.transforms import LoadAnnotations

from vitdense.evaluation.functional.panoptic import read_panoptic_png
from vitdense.registry import TRANSFORMS

__all__ = ['LoadValidatedSegAnnotations', 'LoadValidatedPanopticAnnotations']


@TRANSFORMS.register_module()
class LoadValidatedSegAnnotations(LoadAnnotations):
    """:class:`mmseg.datasets.transforms.LoadAnnotations` that refuses a bad
    label map, naming the file and the problem.

    mmseg loads an RGB label PNG as a 3-channel map and a label PNG of the
    wrong size unchanged (training then crashes far away, or not at all),
    lets a truncated PNG fail inside PIL without the file name, and
    ``IoUMetric`` drops label values outside the classes without a word.
    This loader raises ``ValueError`` for: an undecodable file, a map that
    is not single-channel, a map whose size differs from its image's
    (``results['ori_shape']``, so place it after ``LoadImageFromFile``),
    and, if ``num_classes`` is given, class indices (after
    ``reduce_zero_label``) that are neither ``< num_classes`` nor
    ``ignore_index``.

    Args:
        num_classes (int, optional): number of classes; None skips the
            range check.
        ignore_index (int): the ignored label value. Defaults to 255.
        **kwargs: as :class:`~mmseg.datasets.transforms.LoadAnnotations`.
    """

    def __init__(self,
                 num_classes: Optional[int] = None,
                 ignore_index: int = 255,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def _load_seg_map(self, results: dict) -> None:
        path = results['seg_map_path']
        try:
            super()._load_seg_map(results)
        except FileNotFoundError:
            raise
        except Exception as error:
            raise ValueError(
                f'{path}: cannot decode the label image '
                f'({type(error).__name__}: {error})') from error
        seg = results['gt_seg_map']
        if seg.ndim != 2:
            raise ValueError(
                f'{path}: the label image has shape {seg.shape}; a label map '
                'has one channel of class indices (convert a colour-coded '
                'RGB label to indices first).')
        image_shape = results.get('ori_shape')
        if image_shape is not None and seg.shape != tuple(image_shape[:2]):
            raise ValueError(
                f'{path}: the label map is {seg.shape[0]}x{seg.shape[1]} '
                f'(height x width) but its image {results.get("img_path")} '
                f'is {image_shape[0]}x{image_shape[1]}.')
        if self.num_classes is not None:
            counts = np.bincount(seg.ravel(), minlength=256)
            counts[:self.num_classes] = 0
            counts[self.ignore_index] = 0
            bad = np.flatnonzero(counts).tolist()
            if bad:
                raw = ''
                if results.get('reduce_zero_label') and \
                        results.get('label_map') is None:
                    raw = f' (PNG values {[v + 1 for v in bad]})'
                raise ValueError(
                    f'{path}: class indices {bad}{raw} are outside '
                    f'0..{self.num_classes - 1} and are not ignore_index '
                    f'{self.ignore_index}.')

    def __repr__(self) -> str:
        return (super().__repr__()[:-1] + f', num_classes={self.num_classes}'
                f', ignore_index={self.ignore_index})')


@TRANSFORMS.register_module()
class LoadValidatedPanopticAnnotations(LoadPanopticAnnotations):
    """:class:`mmdet.datasets.transforms.LoadPanopticAnnotations` without
    panopticapi, refusing a bad panoptic PNG.

    mmdet's loader imports ``panopticapi.utils.rgb2id`` when it is built and
    raises ``ImportError`` without it (panopticapi is not on PyPI; see
    :mod:`vitdense.evaluation.functional.panoptic`); this one decodes the
    PNG with vitdense's :func:`~vitdense.evaluation.functional.panoptic.rgb2id`
    and otherwise gives mmdet's results: boxes and labels of the
    non-crowd things, ``gt_masks`` (one ``BitmapMasks`` per non-crowd thing
    in ``segments_info`` order) and ``gt_seg_map`` (contiguous labels, things
    first; 255 for void and for ids that ``segments_info`` lacks).

    ``ValueError`` naming the PNG: an undecodable file, a PNG whose size
    differs from its image's (``results['ori_shape']``, so place it after
    ``LoadImageFromFile``), and ``segments_info`` ids absent from the PNG
    (mmdet would give them empty masks).

    Args: as :class:`~mmdet.datasets.transforms.LoadPanopticAnnotations`.
    """

    def __init__(self,
                 with_bbox: bool = True,
                 with_label: bool = True,
                 with_mask: bool = True,
                 with_seg: bool = True,
                 box_type: str = 'hbox',
                 imdecode_backend: str = 'cv2',
                 backend_args: Optional[dict] = None) -> None:
        # mmdet's LoadAnnotations, skipping the panopticapi import
        DetLoadAnnotations.__init__(
            self,
            with_bbox=with_bbox,
            with_label=with_label,
            with_mask=with_mask,
            with_seg=with_seg,
            with_keypoints=False,
            box_type=box_type,
            imdecode_backend=imdecode_backend,
            backend_args=backend_args)

    def _load_masks_and_semantic_segs(self, results: dict) -> None:
        path = results.get('seg_map_path')
        if path is None:  # inference without ground truth
            return
        try:
            pan_ids = read_panoptic_png(path, self.backend_args)
        except FileNotFoundError:
            raise
        except Exception as error:
            raise ValueError(
                f'{path}: cannot decode the panoptic PNG '
                f'({type(error).__name__}: {error})') from error
        height, width = results['ori_shape']
        if pan_ids.shape != (height, width):
            raise ValueError(
                f'{path}: the panoptic PNG is {pan_ids.shape[0]}x'
                f'{pan_ids.shape[1]} (height x width) but its image '
                f'{results.get("img_path")} is {height}x{width}.')
        segments = results['segments_info']
        present = set(np.unique(pan_ids).tolist())
        absent = [s['id'] for s in segments if s['id'] not in present]
        if absent:
            raise ValueError(
                f'{path}: segment ids {absent} of segments_info are not in '
                'the PNG (ids are R + 256 G + 256^2 B).')
        gt_seg = np.full_like(pan_ids, 255)
        gt_masks = []
        for segment in segments:
            mask = pan_ids == segment['id']
            gt_seg[mask] = segment['category']
            if segment.get('is_thing'):
                gt_masks.append(mask.astype(np.uint8))
        if self.with_mask:
            results['gt_masks'] = BitmapMasks(gt_masks, height, width)
        if self.with_seg:
            results['gt_seg_map'] = gt_seg
