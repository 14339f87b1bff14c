"""Monocular 3D (KITTI) transforms that keep the camera geometry consistent.

The training pipeline of MonoDETR, which MonoDINO-DETR ships unchanged
(JihyeokKim/MonoDINO-DETR@65004cc, ``lib/datasets/kitti/kitti_dataset.py``
and ``kitti_utils.py``, config ``configs/monodinodetr.yaml``): photometric
distortion, random horizontal flip, random crop and scale with the depth
target scaled, and an affine warp to a fixed 1280x384 input, as mmcv
transforms on the results of :class:`~vitdense.datasets.KittiMonoDataset`.

Every transform keeps the state that :class:`PackMono3DInputs` hands to the
model: ``cam2img`` (3x4, rectified camera frame -> input pixels),
``ori_cam2img`` (P2 of the file), ``trans_mat`` (3x3, original pixels ->
input pixels), ``flip`` and ``img_shape``, with always
``cam2img == trans_mat @ ori_cam2img @ diag(-1, 1, 1, 1) ** flip``. Pixel
coordinates are continuous (pixel i spans [i, i + 1)), the convention of the
official warp (PIL samples at pixel centres i + 0.5) and flip (``W - x``),
and of mmdet's flip.

Deliberate differences from the official code:

- The flip is geometric: P2, x, ry and alpha mirror, so every 3D box
  projects onto the flipped image (the official ``aug_calib`` option, here
  in closed form instead of its least-squares fit). The official default
  (``aug_calib: False``) mirrors ry, alpha and the 2D quantities only and
  keeps P2 and x, which leaves the 3D box off its flipped image.
- Photometric distortion is mmdet's ``PhotoMetricDistortion`` with its
  defaults, which draws the official ``pd.PhotometricDistort`` steps with the
  same ranges and probabilities (brightness +-32, contrast 0.5-1.5 before or
  after the HSV steps, saturation 0.5-1.5, hue +-18, a random channel
  permutation); the official code converts its RGB image with BGR2HSV,
  which mirrors the hue axis, so its symmetric hue shift has the same
  distribution. Two official overflows are not reproduced: mmdet clips the
  saturation to 1 and :class:`PackMono3DInputs` clips the image to [0, 255],
  where the official ``astype(np.uint8)`` wraps values around.
"""
from typing import Sequence, Tuple

import cv2
import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from vitdense.registry import TRANSFORMS
from vitdense.structures import project_to_image, wrap_angle

__all__ = [
    'LoadMono3DAnnotations', 'Mono3DRandomFlip', 'Mono3DAffine',
    'FilterMono3DAnnotations', 'PackMono3DInputs'
]

#: Ground-truth arrays that the transforms keep aligned, one row per object.
GT_KEYS = ('gt_bboxes', 'gt_bboxes_labels', 'gt_bboxes_3d', 'gt_labels_3d',
           'centers_2d', 'depths', 'gt_alpha', 'gt_truncated', 'gt_occluded')
#: Mirrors the camera frame (x -> -x).
MIRROR_3D = np.diag([-1.0, 1.0, 1.0, 1.0])


def _apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3x3 pixel affine to points (N, 2)."""
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def _require(results: dict, keys: Sequence[str], transform: str) -> None:
    missing = [key for key in keys if key not in results]
    if missing:
        raise KeyError(f'{transform} needs {missing} in the results; put '
                       'LoadImageFromFile and LoadMono3DAnnotations first in '
                       'the pipeline')


@TRANSFORMS.register_module()
class LoadMono3DAnnotations(BaseTransform):
    """Turn the dataset's ``instances`` into ground-truth arrays and start
    the geometry state.

    Objects with ``ignore_flag`` (DontCare, types outside the classes) are
    dropped, as the official ``writelist``. Adds ``gt_bboxes`` (N, 4),
    ``gt_bboxes_labels``, ``gt_bboxes_3d`` (N, 7: x, y, z, l, h, w, ry),
    ``gt_labels_3d``, ``centers_2d`` (N, 2: the box centre (x, y - h/2, z)
    through P2, the official ``use_3d_center``), ``depths`` (z of the
    centre), ``gt_alpha``, ``gt_truncated``, ``gt_occluded``; ``cam2img`` and
    ``ori_cam2img`` (P2), ``trans_mat`` (identity), ``flip`` (False) and
    ``scale_factor`` (1, 1). An unlabelled sample gets empty arrays.
    """

    def transform(self, results: dict) -> dict:
        _require(results, ('cam2img', ), type(self).__name__)
        cam2img = np.asarray(results['cam2img'], np.float64)
        if cam2img.shape != (3, 4):
            raise ValueError(f'{type(self).__name__}: cam2img of '
                             f'{results.get("img_path")} must be 3x4, got '
                             f'shape {cam2img.shape}')
        kept = [inst for inst in results.get('instances', [])
                if not inst['ignore_flag']]
        count = len(kept)

        def column(key, dtype, width=None):
            shape = (count, width) if width else (count, )
            return np.array([inst[key] for inst in kept], dtype).reshape(shape)

        boxes_3d = column('bbox_3d', np.float64, 7)
        labels = column('bbox_label', np.int64)
        centres = boxes_3d[:, :3].copy()
        centres[:, 1] -= boxes_3d[:, 4] / 2
        results.update(
            gt_bboxes=column('bbox', np.float64, 4), gt_bboxes_labels=labels,
            gt_bboxes_3d=boxes_3d, gt_labels_3d=labels.copy(),
            centers_2d=project_to_image(centres, cam2img),
            depths=centres[:, 2].copy(), gt_alpha=column('alpha', np.float64),
            gt_truncated=column('truncated', np.float64),
            gt_occluded=column('occluded', np.int64),
            cam2img=cam2img.copy(), ori_cam2img=cam2img.copy(),
            trans_mat=np.eye(3), flip=False, flip_direction=None,
            scale_factor=(1.0, 1.0))
        return results


@TRANSFORMS.register_module()
class Mono3DRandomFlip(BaseTransform):
    """Mirror the image horizontally with probability ``prob``, and with it
    the camera: u -> W - u in pixels, x -> -x in the camera frame, so
    ``cam2img`` becomes ``F @ cam2img @ diag(-1, 1, 1, 1)`` with
    ``F = [[-1, 0, W], [0, 1, 0], [0, 0, 1]]``; ry -> pi - ry and
    alpha -> pi - alpha (wrapped to [-pi, pi)), as the official flip.

    Args:
        prob (float): probability of a flip. Defaults to 0.5 (official
            ``random_flip``).
    """

    def __init__(self, prob: float = 0.5) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f'Mono3DRandomFlip: prob must be in [0, 1], got '
                             f'{prob}')
        self.prob = prob

    @cache_randomness
    def _do_flip(self) -> bool:
        return bool(np.random.rand() < self.prob)

    def transform(self, results: dict) -> dict:
        _require(results, GT_KEYS + ('cam2img', 'trans_mat', 'img_shape'),
                 type(self).__name__)
        if not self._do_flip():
            return results
        width = results['img_shape'][1]
        mirror = np.array([[-1.0, 0, width], [0, 1, 0], [0, 0, 1]])
        if 'img' in results:
            results['img'] = np.ascontiguousarray(
                mmcv.imflip(results['img'], 'horizontal'))
        boxes = results['gt_bboxes']
        results['gt_bboxes'] = np.stack(
            [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0],
             boxes[:, 3]], 1)
        results['centers_2d'] = _apply_affine(mirror, results['centers_2d'])
        boxes_3d = results['gt_bboxes_3d'].copy()
        boxes_3d[:, 0] = -boxes_3d[:, 0]
        boxes_3d[:, 6] = wrap_angle(np.pi - boxes_3d[:, 6])
        results['gt_bboxes_3d'] = boxes_3d
        results['gt_alpha'] = wrap_angle(np.pi - results['gt_alpha'])
        results['cam2img'] = mirror @ results['cam2img'] @ MIRROR_3D
        results['trans_mat'] = mirror @ results['trans_mat']
        results['flip'] = not results['flip']
        results['flip_direction'] = 'horizontal' if results['flip'] else None
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(prob={self.prob})'


@TRANSFORMS.register_module()
class Mono3DAffine(BaseTransform):
    """MonoDETR's affine warp to a fixed input, with its random crop and
    scale.

    A region of ``crop_scale`` times the image size centred at ``centre`` is
    scaled uniformly by ``s = input_w / (W * crop_scale)`` to the input
    size, its centre to the input centre (the official
    ``get_affine_transform(centre, crop_size, 0, resolution)``; the input
    height is not matched, 375 -> 386.5 rows are cut to 384). Without a crop
    ``centre`` is the image centre and ``crop_scale`` 1. With probability
    ``crop_prob``: ``crop_scale = clip(1 + scale * N(0, 1), 1 - scale,
    1 + scale)`` and the centre moves by ``clip(shift * N(0, 1), -2 shift,
    2 shift)`` times the image width and height. The depth target then
    follows ``depth_scale``: ``'normal'`` (official config) multiplies
    ``depths`` by ``crop_scale`` (a larger crop shrinks objects as a larger
    distance would), ``'inverse'`` divides, ``'none'`` keeps them.

    The image is warped bilinearly with zero fill (PIL's ``AFFINE`` in the
    official code; cv2 here, moved by half a pixel to sample at the same
    pixel centres). Boxes, projected centres, ``cam2img`` and ``trans_mat``
    go through the same affine; 2D boxes are not clipped to the input, as
    the official targets.

    Args:
        input_size (tuple[int, int]): (width, height) of the input.
            Defaults to (1280, 384) (official ``resolution``).
        crop_prob (float): probability of a random crop and scale. 0 (the
            default) for evaluation; the official training uses 0.5.
        scale (float): crop scale range. Defaults to 0.05 (official config).
        shift (float): centre shift range. Defaults to 0.05 (official
            config).
        depth_scale (str): ``'normal'``, ``'inverse'`` or ``'none'``.
    """

    def __init__(self,
                 input_size: Tuple[int, int] = (1280, 384),
                 crop_prob: float = 0.0,
                 scale: float = 0.05,
                 shift: float = 0.05,
                 depth_scale: str = 'normal') -> None:
        if len(input_size) != 2 or min(input_size) <= 0:
            raise ValueError('Mono3DAffine: input_size must be (width, '
                             f'height) > 0, got {input_size}')
        if not 0 <= crop_prob <= 1:
            raise ValueError('Mono3DAffine: crop_prob must be in [0, 1], got '
                             f'{crop_prob}')
        if not 0 <= scale < 1 or shift < 0:
            raise ValueError('Mono3DAffine: needs 0 <= scale < 1 and shift >= '
                             f'0, got scale={scale}, shift={shift}')
        if depth_scale not in ('normal', 'inverse', 'none'):
            raise ValueError('Mono3DAffine: depth_scale must be "normal", '
                             f'"inverse" or "none", got {depth_scale!r}')
        self.input_size = tuple(int(v) for v in input_size)
        self.crop_prob = crop_prob
        self.scale = scale
        self.shift = shift
        self.depth_scale = depth_scale

    @cache_randomness
    def _random_crop(self) -> Tuple[float, np.ndarray]:
        """``(crop_scale, centre shift as a fraction of the image size)``."""
        if not np.random.rand() < self.crop_prob:
            return 1.0, np.zeros(2)
        crop_scale = float(np.clip(np.random.randn() * self.scale + 1,
                                   1 - self.scale, 1 + self.scale))
        shift = np.clip(np.random.randn(2) * self.shift, -2 * self.shift,
                        2 * self.shift)
        return crop_scale, shift

    def transform(self, results: dict) -> dict:
        _require(results, GT_KEYS + ('cam2img', 'trans_mat', 'img_shape'),
                 type(self).__name__)
        height, width = results['img_shape'][:2]
        crop_scale, shift = self._random_crop()
        size = np.array([width, height], np.float64)
        centre = size / 2 + size * shift
        out_w, out_h = self.input_size
        s = out_w / (width * crop_scale)
        affine = np.array([[s, 0, out_w / 2 - s * centre[0]],
                           [0, s, out_h / 2 - s * centre[1]], [0, 0, 1]])
        if 'img' in results:
            # cv2 puts pixel centres at integers, the labels at i + 0.5
            half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
            warp = np.linalg.inv(half) @ affine @ half
            results['img'] = cv2.warpAffine(
                results['img'], warp[:2], (out_w, out_h),
                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                borderValue=0)
        boxes = results['gt_bboxes']
        results['gt_bboxes'] = np.concatenate(
            [_apply_affine(affine, boxes[:, :2]),
             _apply_affine(affine, boxes[:, 2:])], 1)
        results['centers_2d'] = _apply_affine(affine, results['centers_2d'])
        if self.depth_scale == 'normal':
            results['depths'] = results['depths'] * crop_scale
        elif self.depth_scale == 'inverse':
            results['depths'] = results['depths'] / crop_scale
        results['cam2img'] = affine @ results['cam2img']
        results['trans_mat'] = affine @ results['trans_mat']
        results['img_shape'] = (out_h, out_w)
        scale_factor = results.get('scale_factor', (1.0, 1.0))
        results['scale_factor'] = (scale_factor[0] * s, scale_factor[1] * s)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(input_size={self.input_size}, '
                f'crop_prob={self.crop_prob}, scale={self.scale}, '
                f'shift={self.shift}, depth_scale={self.depth_scale!r})')


@TRANSFORMS.register_module()
class FilterMono3DAnnotations(BaseTransform):
    """Drop the objects that the official training targets skip.

    In ``KITTI_Dataset.__getitem__`` order: objects of level 'UnKnown'
    (original box height + 1 below ``min_height``, truncation above
    ``max_truncation`` or occlusion above ``max_occlusion``), depth z outside
    ``depth_range``, projected centre outside the input, projected centre
    outside its own 2D box (the official ``l, r, t, b < 0`` with
    ``clip_2d: False``). Put it after :class:`Mono3DAffine`. The original
    height is the input height over ``trans_mat``'s scale (every transform
    here is a scale, shift or mirror).

    Args:
        min_height (float): Defaults to 25 (KITTI 'Hard').
        max_truncation (float): Defaults to 0.5.
        max_occlusion (int): Defaults to 2.
        depth_range (tuple[float, float]): Defaults to (2, 65).
        centre_in_input (bool): Defaults to True.
        centre_in_box (bool): Defaults to True.
    """

    def __init__(self,
                 min_height: float = 25,
                 max_truncation: float = 0.5,
                 max_occlusion: int = 2,
                 depth_range: Tuple[float, float] = (2, 65),
                 centre_in_input: bool = True,
                 centre_in_box: bool = True) -> None:
        self.min_height = min_height
        self.max_truncation = max_truncation
        self.max_occlusion = max_occlusion
        self.depth_range = tuple(depth_range)
        self.centre_in_input = centre_in_input
        self.centre_in_box = centre_in_box

    def transform(self, results: dict) -> dict:
        _require(results, GT_KEYS + ('trans_mat', 'img_shape'),
                 type(self).__name__)
        boxes = results['gt_bboxes']
        centres = results['centers_2d']
        height = (boxes[:, 3] - boxes[:, 1]) / abs(results['trans_mat'][1, 1])
        depth = results['gt_bboxes_3d'][:, 2]
        keep = ((height + 1 >= self.min_height)
                & (results['gt_truncated'] <= self.max_truncation)
                & (results['gt_occluded'] <= self.max_occlusion)
                & (depth >= self.depth_range[0])
                & (depth <= self.depth_range[1]))
        if self.centre_in_input:
            input_h, input_w = results['img_shape'][:2]
            keep &= ((centres[:, 0] >= 0) & (centres[:, 0] < input_w)
                     & (centres[:, 1] >= 0) & (centres[:, 1] < input_h))
        if self.centre_in_box:
            keep &= ((centres[:, 0] >= boxes[:, 0])
                     & (centres[:, 0] <= boxes[:, 2])
                     & (centres[:, 1] >= boxes[:, 1])
                     & (centres[:, 1] <= boxes[:, 3]))
        for key in GT_KEYS:
            results[key] = results[key][keep]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(min_height={self.min_height}, '
                f'max_truncation={self.max_truncation}, '
                f'max_occlusion={self.max_occlusion}, '
                f'depth_range={self.depth_range}, '
                f'centre_in_input={self.centre_in_input}, '
                f'centre_in_box={self.centre_in_box})')


@TRANSFORMS.register_module()
class PackMono3DInputs(BaseTransform):
    """Pack the image and the mono-3D ground truth into a ``DetDataSample``.

    ``inputs``: CHW uint8 tensor (a float image, e.g. after
    ``PhotoMetricDistortion``, is rounded and clipped to [0, 255]).
    ``data_samples``: ``gt_instances`` (``bboxes`` float32 (N, 4),
    ``labels`` int64), ``gt_instances_3d`` (``bboxes_3d`` (N, 7),
    ``labels_3d``, ``centers_2d`` (N, 2), ``depths``, ``alpha``), the
    ``meta_keys`` as metainfo (``pad_shape`` defaults to ``img_shape``,
    ``flip_direction`` to None) and ``eval_ann_info`` unchanged when present.

    Args:
        meta_keys (Sequence[str]): metainfo keys, all required but the two
            with defaults.
    """

    def __init__(self,
                 meta_keys: Sequence[str] = (
                     'img_path', 'sample_id', 'ori_shape', 'img_shape',
                     'pad_shape', 'cam2img', 'ori_cam2img', 'trans_mat',
                     'flip', 'flip_direction', 'scale_factor')) -> None:
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        defaults = {'pad_shape': results.get('img_shape'),
                    'flip_direction': None}
        _require(results, GT_KEYS + tuple(
            key for key in self.meta_keys if key not in defaults),
            type(self).__name__)
        packed = {}
        if 'img' in results:
            img = results['img']
            if img.ndim < 3:
                img = img[..., None]
            if img.dtype != np.uint8:
                img = np.clip(np.round(img), 0, 255).astype(np.uint8)
            packed['inputs'] = torch.from_numpy(
                np.ascontiguousarray(img.transpose(2, 0, 1)))

        def tensor(key: str, dtype: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(np.asarray(results[key]), dtype=dtype)

        data_sample = DetDataSample()
        data_sample.gt_instances = InstanceData(
            bboxes=tensor('gt_bboxes', torch.float32).reshape(-1, 4),
            labels=tensor('gt_bboxes_labels', torch.int64))
        data_sample.gt_instances_3d = InstanceData(
            bboxes_3d=tensor('gt_bboxes_3d', torch.float32).reshape(-1, 7),
            labels_3d=tensor('gt_labels_3d', torch.int64),
            centers_2d=tensor('centers_2d', torch.float32).reshape(-1, 2),
            depths=tensor('depths', torch.float32),
            alpha=tensor('gt_alpha', torch.float32))
        if 'eval_ann_info' in results:
            data_sample.eval_ann_info = results['eval_ann_info']
        data_sample.set_metainfo({
            key: results[key] if key in results else defaults[key]
            for key in self.meta_keys})
        packed['data_samples'] = data_sample
        return packed

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'
