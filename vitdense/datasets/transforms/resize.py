"""The test-time resize of torchvision-style detectors (shortest edge to
``min_size``, longest at most ``max_size``, sizes truncated, antialiased
torch bilinear interpolation), as a pipeline transform."""
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.datasets.transforms import Resize
from mmdet.structures.bbox import autocast_box_type

from vitdense.registry import TRANSFORMS

__all__ = ['ResizeShortestEdgeTrunc']


@TRANSFORMS.register_module()
class ResizeShortestEdgeTrunc(Resize):
    """Resize the shortest edge to ``min_size``, the longest to at most
    ``max_size``, truncating the size, with torch's antialiased bilinear
    interpolation.

    This is the evaluation resize of the official Relation-DETR
    (xiuqhou/Relation-DETR@b485955, ``EvalResize`` in
    ``models/detectors/base_detector.py``, applied inside the model to the
    raw uint8 image before ``ConvertImageDtype`` and ``Normalize``):
    ``r = min(min_size / min(h, w), max_size / max(h, w))`` in float32 torch
    arithmetic (``n / t`` is ``t.reciprocal() * n``), the new size
    ``(int(h * r), int(w * r))`` truncated; then ``F.interpolate(...,
    mode='bilinear', align_corners=False, antialias=True)`` on the image cast
    to float32, rounded and cast back to its dtype (torchvision's tensor
    ``resize``). mmdet's ``Resize(keep_ratio=True)`` rounds the size and
    resizes with cv2 (480x640 becomes 800x1067 there, 800x1066 here; 375x500
    799x1066 here), so it cannot reproduce the official inputs; this class
    reuses its handling of boxes, masks, segmentation maps and
    ``scale_factor`` (the exact ratio ``(new_w / w, new_h / h)``, so the
    predictions map back to the original image as the official
    ``PostProcess`` does).

    Masks and segmentation maps are resized to the new size exactly (as
    mmdet's ``keep_ratio=False``).

    Args:
        min_size (int): target length of the shortest edge. Defaults to 800.
        max_size (int): the longest edge's maximum. Defaults to 1333.
        antialias (bool): antialias when downscaling. Defaults to True (the
            official evaluation's).
        clip_object_border (bool): clip boxes to the resized image, as
            mmdet's ``Resize``. Defaults to True.
    """

    def __init__(self,
                 min_size: int = 800,
                 max_size: int = 1333,
                 antialias: bool = True,
                 clip_object_border: bool = True) -> None:
        if not 0 < min_size <= max_size:
            raise ValueError('ResizeShortestEdgeTrunc needs 0 < min_size <= '
                             f'max_size, got min_size={min_size}, '
                             f'max_size={max_size}')
        super().__init__(
            scale=(max_size, min_size),
            keep_ratio=False,
            clip_object_border=clip_object_border)
        self.min_size = min_size
        self.max_size = max_size
        self.antialias = antialias

    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        """The resized ``(height, width)`` of a ``height`` x ``width``
        image, computed with the official float32 tensor arithmetic."""
        h, w = torch.tensor((height, width))
        r = self.min_size / torch.min(h, w)
        r = torch.min(r, self.max_size / torch.max(h, w))
        return int((h * r).to(h.dtype)), int((w * r).to(w.dtype))

    def _resize_img(self, results: dict) -> None:
        """Resize ``results['img']`` (H, W[, C]) to ``results['scale']``."""
        img = results['img']
        h, w = img.shape[:2]
        new_w, new_h = results['scale']
        x = torch.from_numpy(np.ascontiguousarray(img))
        x = x.reshape(h, w, -1).permute(2, 0, 1)[None]  # (1, C, H, W)
        dtype = x.dtype
        if dtype not in (torch.float32, torch.float64):
            x = x.float()
        x = F.interpolate(
            x, (new_h, new_w),
            mode='bilinear',
            align_corners=False,
            antialias=self.antialias)
        if not dtype.is_floating_point:
            x = x.round()
        resized = x.to(dtype)[0].permute(1, 2, 0).numpy()
        results['img'] = resized.reshape((new_h, new_w) + img.shape[2:])
        results['img_shape'] = (new_h, new_w)
        results['scale_factor'] = (new_w / w, new_h / h)
        results['keep_ratio'] = self.keep_ratio

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Resize the image, boxes, masks and segmentation map, and record
        ``scale``, ``scale_factor`` and the homography matrix."""
        new_h, new_w = self.output_size(*results['img'].shape[:2])
        results['scale'] = (new_w, new_h)
        self._resize_img(results)
        self._resize_bboxes(results)
        self._resize_masks(results)
        self._resize_seg(results)
        self._record_homography_matrix(results)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(min_size={self.min_size}, '
                f'max_size={self.max_size}, antialias={self.antialias}, '
                f'clip_object_border={self.clip_object_border})')
