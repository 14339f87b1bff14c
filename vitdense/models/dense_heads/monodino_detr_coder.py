"""MonoDINO-DETR / MonoDETR training targets and inference decoding.

"MonoDINO-DETR: Depth-Enhanced Monocular 3D Object Detection Using a Vision
Foundation Model" (Kim et al., IEEE IV 2025, arXiv:2502.00315), official code
https://github.com/JihyeokKim/MonoDINO-DETR (a MonoDETR fork):
:func:`targets_from_data_samples` builds the per-image target dicts of
``lib/datasets/kitti/kitti_dataset.py`` (after ``Trainer.prepare_targets``)
from vitdense data samples, :func:`decode_predictions` is
``lib/helpers/decode_helper.py`` (``extract_dets_from_outputs`` +
``decode_detections``) returning ``pred_instances_3d`` per the KITTI data
contract. Different from the official code: the pipeline applies the
affine/crop before this module sees the sample, so targets are computed from
the transformed boxes and the input camera matrix (``cam2img``); decoding
maps input pixels back through the inverse of ``trans_mat`` where the
official multiplies normalised coordinates by the original image size. That
is the same in x, but MonoDETR's affine scales both axes by the width ratio,
so the official y is off, linearly from 0 at the centre to ~1.2 px at the
top/bottom border of a 1242x375 image (0.05 m at 30 m); vitdense's is exact.
"""
import math
from typing import Dict, List, Sequence

import numpy as np
import torch
from mmengine.structures import InstanceData
from torch import Tensor

__all__ = [
    'NUM_HEADING_BINS', 'angle_to_bin', 'bin_to_angle', 'box_cxcylrtb_to_xyxy',
    'targets_from_data_samples', 'decode_predictions'
]

#: ``lib/datasets/utils.py``: multi-bin heading with 12 bins over 2 pi.
NUM_HEADING_BINS = 12


def box_cxcylrtb_to_xyxy(boxes: Tensor) -> Tensor:
    """(cx, cy, l, r, t, b) -> (x1, y1, x2, y2): the projected 3D centre and
    its distances to the 2D box edges (official ``box_cxcylrtb_to_xyxy``)."""
    cx, cy, left, right, top, bottom = boxes.unbind(-1)
    return torch.stack([cx - left, cy - top, cx + right, cy + bottom], -1)


def angle_to_bin(angle: Tensor) -> 'tuple[Tensor, Tensor]':
    """Heading bin and residual of ``angle`` (official ``angle2class``):
    12 bins of 30 degrees centred on 0, 30, ... 330 degrees."""
    per_bin = 2 * math.pi / NUM_HEADING_BINS
    shifted = (torch.remainder(angle, 2 * math.pi) + per_bin / 2) % (2 *
                                                                     math.pi)
    bins = torch.div(shifted, per_bin, rounding_mode='floor').long()
    residual = shifted - (bins * per_bin + per_bin / 2)
    return bins, residual


def bin_to_angle(bins: Tensor, residual: Tensor) -> Tensor:
    """Inverse of :func:`angle_to_bin` in the KITTI label range (official
    ``class2angle(..., to_label_format=True)``: above pi wraps once)."""
    angle = bins * (2 * math.pi / NUM_HEADING_BINS) + residual
    return torch.where(angle > math.pi, angle - 2 * math.pi, angle)


def _wrap_once(angle: Tensor) -> Tensor:
    """Official ``alpha2ry``/``ry2alpha`` range check: one 2 pi step."""
    angle = torch.where(angle > math.pi, angle - 2 * math.pi, angle)
    return torch.where(angle < -math.pi, angle + 2 * math.pi, angle)


def _as_tensor(value, like: Tensor) -> Tensor:
    """A metainfo matrix (array, list or tensor) as float64 on ``like``'s
    device."""
    if isinstance(value, Tensor):
        return value.to(like.device, torch.float64)
    return torch.as_tensor(np.asarray(value),
                           dtype=torch.float64,
                           device=like.device)


def targets_from_data_samples(
        data_samples: Sequence) -> List[Dict[str, Tensor]]:
    """Official MonoDETR training targets from vitdense data samples.

    Per image a dict as ``kitti_dataset.py`` encodes it (rows kept by
    ``mask_2d``): ``labels`` (N,), ``boxes`` (N, 4) normalised 2D box
    (cx, cy, w, h), ``boxes_3d`` (N, 6) normalised projected 3D centre
    (cx, cy) and its distances (l, r, t, b) to the 2D box edges, ``depth``
    (N, 1) (the pipeline's crop-scaled ``depths``), ``size_3d`` (N, 3) as
    (h, w, l), ``heading_bin``/``heading_res`` (N, 1) of alpha from
    ``ry2alpha`` (the ray through the 2D box centre column), ``calibs``
    (N, 3, 4) the file's P2. Coordinates are normalised by ``img_shape``.

    Every ground truth becomes a target: the objects the official dataset
    skips (level 'UnKnown', depth outside [2, 65] m, projected centre outside
    the input or outside its 2D box) are dropped by the pipeline's
    ``FilterMono3DAnnotations``, and the 2D boxes are the unclipped
    transform of the label boxes (official ``clip_2d=False``).

    Args:
        data_samples (Sequence[DetDataSample]): with ``gt_instances``
            (``bboxes`` in input pixels), ``gt_instances_3d`` (``bboxes_3d``
            (x, y, z, l, h, w, ry), ``labels_3d``, ``centers_2d``,
            ``depths``) and metainfo ``img_shape``, ``cam2img`` and
            ``ori_cam2img`` (see the KITTI data contract).

    Returns:
        list[dict[str, Tensor]]: one target dict per sample.
    """
    targets = []
    for sample in data_samples:
        meta = sample.metainfo
        for key in ('img_shape', 'cam2img', 'ori_cam2img'):
            if key not in meta:
                raise KeyError(
                    f'monodino_detr_coder.py: data sample metainfo has no '
                    f'{key!r}; the KITTI pipeline (PackMono3DInputs) sets it')
        gt_3d = sample.gt_instances_3d
        bboxes_3d = gt_3d.bboxes_3d
        bboxes_3d = getattr(bboxes_3d, 'tensor', bboxes_3d)
        boxes_2d = sample.gt_instances.bboxes
        boxes_2d = getattr(boxes_2d, 'tensor', boxes_2d)
        if len(boxes_2d) != len(bboxes_3d):
            raise ValueError(
                f'monodino_detr_coder.py: {len(boxes_2d)} 2D boxes but '
                f'{len(bboxes_3d)} 3D boxes in one data sample')
        height, width = meta['img_shape'][:2]
        size = bboxes_3d.new_tensor([width, height])
        corners = boxes_2d.float() / size.repeat(2)
        centres = gt_3d.centers_2d.float() / size
        lrtb = torch.stack([
            centres[:, 0] - corners[:, 0], corners[:, 2] - centres[:, 0],
            centres[:, 1] - corners[:, 1], corners[:, 3] - centres[:, 1]
        ], -1)
        # ry2alpha on the ray through the 2D box centre column: the input
        # camera gives the official angle (computed there in original pixels
        # with the file's P2), as the affine has no rotation.
        cam2img = _as_tensor(meta['cam2img'], bboxes_3d)
        column = (boxes_2d[:, 0] + boxes_2d[:, 2]).double() / 2
        alpha = bboxes_3d[:, 6].double() - torch.atan2(column - cam2img[0, 2],
                                                       cam2img[0, 0])
        heading_bin, heading_res = angle_to_bin(alpha)

        ori_cam2img = _as_tensor(meta['ori_cam2img'], bboxes_3d).float()
        targets.append(
            dict(labels=gt_3d.labels_3d.long(),
                 boxes=torch.cat([(corners[:, :2] + corners[:, 2:]) / 2,
                                  corners[:, 2:] - corners[:, :2]], -1),
                 boxes_3d=torch.cat([centres, lrtb], -1),
                 depth=gt_3d.depths.float().view(-1, 1),
                 size_3d=bboxes_3d[:, [4, 5, 3]].float(),
                 heading_bin=heading_bin.view(-1, 1),
                 heading_res=heading_res.float().view(-1, 1),
                 calibs=ori_cam2img.expand(len(bboxes_3d), 3, 4).clone()))
    return targets


def decode_predictions(outputs: Dict[str, Tensor],
                       batch_img_metas: Sequence[dict],
                       topk: int = 50,
                       score_thr: float = 0.2) -> List[InstanceData]:
    """Camera-frame KITTI boxes from MonoDINO-DETR outputs.

    Official decoding: top-``topk`` over the sigmoid of all (query, class)
    logits; detections with class probability below ``score_thr`` dropped;
    score = probability x depth confidence exp(-log variance); the projected
    3D centre back-projected at the predicted depth through the file's P2
    (``Calibration.img_to_rect``), y moved down by h / 2 to the bottom
    centre; alpha from the 12-bin heading, ry = alpha + atan2(u - cu, fu)
    with u the 2D box centre column (``alpha2ry``). Input pixels are mapped
    to the original image with the inverse of ``trans_mat``.

    Args:
        outputs (dict[str, Tensor]): ``pred_logits`` (B, Q, C),
            ``pred_boxes`` (B, Q, 6), ``pred_3d_dim`` (B, Q, 3) as (h, w, l),
            ``pred_depth`` (B, Q, 2) (depth, log variance), ``pred_angle``
            (B, Q, 24).
        batch_img_metas (Sequence[dict]): ``img_shape``, ``trans_mat``
            (original -> input pixels) and ``ori_cam2img`` (the file's P2)
            per image.
        topk (int): detections considered per image. Defaults to 50.
        score_thr (float): class probability threshold. Defaults to 0.2.

    Returns:
        list[InstanceData]: per image ``bboxes_3d`` (M, 7) (x, y, z, l, h, w,
        ry) in the camera frame of the original image, ``scores_3d``,
        ``labels_3d``, ``alpha`` and ``bboxes`` (M, 4), the 2D box in
        original-image pixels.
    """
    logits = outputs['pred_logits']
    batch, num_queries, num_classes = logits.shape
    if len(batch_img_metas) != batch:
        raise ValueError(
            f'monodino_detr_coder.py: {len(batch_img_metas)} image metas for '
            f'a batch of {batch}')
    probs = logits.sigmoid().reshape(batch, -1)
    probs, index = probs.topk(min(topk, probs.shape[1]), dim=1)
    query = torch.div(index, num_classes, rounding_mode='floor')

    def gather(key: str) -> Tensor:
        value = outputs[key]
        rows = query[..., None].expand(-1, -1, value.shape[-1])
        return torch.gather(value, 1, rows).double()

    boxes, dims, depth, heading = (gather('pred_boxes'), gather('pred_3d_dim'),
                                   gather('pred_depth'), gather('pred_angle'))
    results = []
    for i, meta in enumerate(batch_img_metas):
        keep = probs[i] >= score_thr
        box, dim, dep, head = (boxes[i][keep], dims[i][keep], depth[i][keep],
                               heading[i][keep])
        height, width = meta['img_shape'][:2]
        trans = _as_tensor(meta['trans_mat'], box)
        if trans.shape == (2, 3):
            trans = torch.cat([trans, trans.new_tensor([[0, 0, 1]])])
        to_original = torch.linalg.inv(trans)
        calib = _as_tensor(meta['ori_cam2img'], box)
        scale = box.new_tensor([width, height])

        def original(points: Tensor) -> Tensor:
            """Normalised input coordinates -> original pixels."""
            points = points * scale
            return points @ to_original[:2, :2].T + to_original[:2, 2]

        corners = box_cxcylrtb_to_xyxy(box)
        bboxes = torch.cat([original(corners[:, :2]),
                            original(corners[:, 2:])], -1)
        centre = original(box[:, :2])
        z = dep[:, 0]
        fu, fv, cu, cv = calib[0, 0], calib[1, 1], calib[0, 2], calib[1, 2]
        x = (centre[:, 0] - cu) * z / fu + calib[0, 3] / -fu
        y = (centre[:, 1] - cv) * z / fv + calib[1, 3] / -fv + dim[:, 0] / 2
        bins = head[:, :NUM_HEADING_BINS].argmax(-1)
        residual = head[:, NUM_HEADING_BINS:].gather(1, bins[:, None])[:, 0]
        alpha = bin_to_angle(bins, residual)
        column = (bboxes[:, 0] + bboxes[:, 2]) / 2
        ry = _wrap_once(alpha + torch.atan2(column - cu, fu))

        result = InstanceData()
        result.bboxes_3d = torch.stack(
            [x, y, z, dim[:, 2], dim[:, 0], dim[:, 1], ry], -1).float()
        result.scores_3d = (probs[i][keep] *
                            torch.exp(-dep[:, 1]).to(probs.dtype))
        result.labels_3d = (index[i][keep] % num_classes).long()
        result.alpha = alpha.float()
        result.bboxes = bboxes.float()
        results.append(result)
    return results
