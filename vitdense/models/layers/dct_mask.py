"""ViDT+'s unified query representation (UQR): instance masks as DCT vectors.

"An Extendable, Efficient and Effective Transformer-based Object Detector"
(Song et al., arXiv:2204.07962, Sec. 3.2, after SOLQ, arXiv:2106.02351);
official code https://github.com/naver-ai/vidt (branch ``vidt-plus``
a8c48b5: ``methods/vidt/dct.py`` ``ProcessorDCT``, the targets in
``methods/vidt/criterion.py`` ``loss_masks`` and the decoding in
``methods/vidt/postprocessor.py`` ``PostProcess``).

A ground-truth mask is cropped to its box and resized to ``mask_size`` x
``mask_size`` (RoIAlign, ``aligned=True``, binarised at 0.5), transformed by
the orthonormal 2-D DCT-II (``cv2.dct``) and the first ``num_coeffs``
coefficients in JPEG zig-zag order are kept. A predicted vector is decoded by
zero-filling the rest, the inverse DCT, thresholding at the midpoint of its
own minimum and maximum, and pasting into its box.

Different from the official code: the DCT is two matrix products in torch
(float64, batched, on the tensors' device, restricted to the top-left block
that holds the kept coefficients; no OpenCV/NumPy loop per instance), so
encoding and decoding run inside the model on any device; the official
post-processing uses ``cv2`` without importing it. The official zig-zag scan
stops at the main anti-diagonal for odd ``mask_size``; here the order is
complete (it agrees with the official wherever the official is defined).
"""
import math
from typing import Tuple

import torch
from mmcv.ops import roi_align
from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
from torch import Tensor, nn

__all__ = ['DCTMaskCoder', 'dct_matrix', 'zigzag_indices']


def dct_matrix(n: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Orthonormal DCT-II matrix ``D`` (n, n): ``dct2(X) = D @ X @ D.T``,
    the transform of ``cv2.dct`` on a 2-D array."""
    k = torch.arange(n, dtype=dtype)[:, None]
    i = torch.arange(n, dtype=dtype)[None]
    mat = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    mat[0] /= math.sqrt(2)
    return mat


def zigzag_indices(n: int) -> Tensor:
    """Row-major flat indices of an (n, n) matrix in JPEG zig-zag order:
    anti-diagonals ``r + c = s`` in turn, upwards (row decreasing) when ``s``
    is even, downwards when odd (official ``ProcessorDCT.zigzag``)."""
    order = sorted(((r + c, r if (r + c) % 2 else -r, r * n + c)
                    for r in range(n) for c in range(n)))
    return torch.tensor([flat for _, _, flat in order], dtype=torch.long)


class DCTMaskCoder(nn.Module):
    """Encode binary masks to DCT vectors and decode them back.

    Args:
        mask_size (int): side of the square mask the DCT works on (official
            ``gt_mask_len``). Default: 128.
        num_coeffs (int): coefficients kept, in zig-zag order (official
            ``n_keep``). Default: 256.
    """

    def __init__(self, mask_size: int = 128, num_coeffs: int = 256) -> None:
        super().__init__()
        if not 0 < num_coeffs <= mask_size**2:
            raise ValueError(f'DCTMaskCoder: num_coeffs must be in [1, '
                             f'{mask_size**2}] (mask_size**2), got '
                             f'{num_coeffs}')
        self.mask_size = mask_size
        self.num_coeffs = num_coeffs
        zigzag = zigzag_indices(mask_size)[:num_coeffs]
        rows, cols = zigzag // mask_size, zigzag % mask_size
        # the kept coefficients lie in the top-left (k, k) block: only k rows
        # of the DCT matrix are needed to encode or decode
        self.block = int(torch.maximum(rows, cols).max()) + 1
        self.register_buffer('dct',
                             dct_matrix(mask_size)[:self.block],
                             persistent=False)
        self.register_buffer('block_index',
                             rows * self.block + cols,
                             persistent=False)

    def encode(self, masks: Tensor) -> Tensor:
        """(N, S, S) masks (binary, any dtype) -> (N, num_coeffs) vectors in
        ``torch.float32`` (computed in float64)."""
        self._check_square(masks, 'encode')
        dct = self.dct.to(masks.device)
        coeffs = dct @ masks.to(dct.dtype) @ dct.T  # (N, k, k)
        return coeffs.flatten(1)[:, self.block_index.to(masks.device)].float()

    def decode(self, vectors: Tensor) -> Tensor:
        """(N, num_coeffs) vectors -> (N, S, S) bool masks: inverse DCT of
        the zero-filled coefficients, ``> (min + max) / 2`` per mask."""
        if vectors.dim() != 2 or vectors.shape[1] != self.num_coeffs:
            raise ValueError(f'DCTMaskCoder.decode expects (N, '
                             f'{self.num_coeffs}) vectors, got '
                             f'{tuple(vectors.shape)}')
        dct = self.dct.to(vectors.device)
        coeffs = vectors.new_zeros((vectors.shape[0], self.block**2),
                                   dtype=dct.dtype)
        coeffs[:, self.block_index.to(vectors.device)] = vectors.to(dct.dtype)
        masks = dct.T @ coeffs.view(-1, self.block, self.block) @ dct
        flat = masks.flatten(1)
        mid = (flat.amax(1) + flat.amin(1)) / 2
        return masks > mid[:, None, None]

    def crop_masks(self, masks: Tensor, bboxes: Tensor) -> Tensor:
        """(N, H, W) image masks cropped to their (N, 4) xyxy pixel boxes and
        resized to (N, S, S) bool (RoIAlign ``aligned=True``, >= 0.5; the
        official ``BitMasks.crop_and_resize``)."""
        if len(masks) != len(bboxes):
            raise ValueError(f'DCTMaskCoder.crop_masks: {len(masks)} masks '
                             f'but {len(bboxes)} boxes')
        if len(masks) == 0:
            return masks.new_zeros((0, self.mask_size, self.mask_size),
                                   dtype=torch.bool)
        inds = torch.arange(len(bboxes), device=masks.device)
        rois = torch.cat(
            [inds[:, None].float(),
             bboxes.detach().float().to(masks.device)], 1)
        crops = roi_align(masks[:, None].float(), rois,
                          (self.mask_size, self.mask_size), 1.0, 0, 'avg',
                          True)
        return crops[:, 0] >= 0.5

    def encode_instances(self, masks: Tensor, bboxes: Tensor) -> Tensor:
        """Targets of the vector loss: masks (N, H, W) cropped to their
        boxes (N, 4), xyxy pixels, then encoded -> (N, num_coeffs)."""
        return self.encode(self.crop_masks(masks, bboxes))

    def paste(self, vectors: Tensor, bboxes: Tensor,
              img_shape: Tuple[int, int]) -> Tensor:
        """Decoded vectors (N, num_coeffs) pasted into their (N, 4) xyxy
        boxes of an ``img_shape`` (H, W) image -> (N, H, W) bool (bilinear,
        >= 0.5): mmdet's ``_do_paste_mask``, one by one inside the box on
        CPU, as the official detectron2 ``paste_masks_in_image``."""
        img_h, img_w = int(img_shape[0]), int(img_shape[1])
        masks = self.decode(vectors).float()[:, None]
        bboxes = bboxes.float()
        out = masks.new_zeros((len(masks), img_h, img_w), dtype=torch.bool)
        if masks.device.type == 'cpu':
            for i in range(len(masks)):
                pasted, region = _do_paste_mask(masks[i:i + 1],
                                                bboxes[i:i + 1], img_h, img_w)
                out[(i, ) + region] = pasted[0] >= 0.5
            return out
        # 1 GiB of float32 per chunk, as mmdet's FCNMaskHead on GPU
        chunks = max(1, math.ceil(len(masks) * img_h * img_w * 4 / 2**30))
        for inds in torch.arange(len(masks),
                                 device=masks.device).chunk(chunks):
            pasted, _ = _do_paste_mask(masks[inds],
                                       bboxes[inds],
                                       img_h,
                                       img_w,
                                       skip_empty=False)
            out[inds] = pasted >= 0.5
        return out

    def _check_square(self, masks: Tensor, name: str) -> None:
        if masks.dim() != 3 or masks.shape[1:] != (self.mask_size,
                                                   self.mask_size):
            raise ValueError(f'DCTMaskCoder.{name} expects (N, '
                             f'{self.mask_size}, {self.mask_size}) masks, '
                             f'got {tuple(masks.shape)}')
