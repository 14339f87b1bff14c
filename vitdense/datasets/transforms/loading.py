"""mmseg's label loading with checks whose errors name the label file."""
from typing import Optional

import numpy as np
from mmseg.datasets.transforms import LoadAnnotations

from vitdense.registry import TRANSFORMS

__all__ = ['LoadValidatedSegAnnotations']


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
