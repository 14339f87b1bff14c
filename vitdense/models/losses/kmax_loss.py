"""kMaX-DeepLab criterion: PQ-style Hungarian matching and the losses.

"k-means Mask Transformer" (Yu et al., ECCV 2022, arXiv:2207.04044),
official PyTorch code https://github.com/bytedance/kmax-deeplab (commit
f8e1d04): ``SetCriterion`` in ``kmax_deeplab/modeling/criterion.py``,
``HungarianMatcher`` in ``kmax_deeplab/modeling/matcher.py``, the weights of
``kmax_deeplab/config.py`` and the targets of
``PanoptickMaXDeepLabDatasetMapper`` (MaX-DeepLab's PQ-style loss, Wang et
al., CVPR 2021, Eq. 6-10). The terms are written here rather than taken from
mmdet's ``DiceLoss``/``CrossEntropyLoss``: they are softmax over the queries
(not per-mask sigmoid), weighted per query by the matched class probability
or dice, and averaged over the non-zero entries of each image.

Different from the official code: the pixel sampling of the instance
discrimination and aux semantic terms draws from ``generator`` when given
(seedable; the official draws from the global RNG), and samples at most as
many pixels as the map has (the official ``topk`` fails on maps under 4096
pixels). Losses come weighted, named as mmdet's DETR heads (``loss_cls``,
``d0.loss_cls``, ...).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.structures.mask import BitmapMasks
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from vitdense.registry import MODELS

__all__ = ['KMaXCriterion', 'pq_matching', 'targets_from_data_samples']

#: official ``_SOFTMAX_MASKING_CONSTANT``: added to void pixels' sampling
#: logits.
SOFTMAX_MASKING_CONSTANT = -99999.0
#: official alpha of the class loss: non-void targets x 0.75, void x 0.25.
CLASS_ALPHA = 0.75
#: official ``dice_loss``: the deeplab2 loss modifier, a constant factor.
DICE_FACTOR = 0.75
#: official ``loss_pixels``: temperature of the predicted similarity.
INSDIS_TEMPERATURE = 0.3


def divide_no_nan(x: Tensor, y: Tensor) -> Tensor:
    """``x / y`` with NaN and +-inf set to 0 (TF ``divide_no_nan``)."""
    return torch.nan_to_num(x / y, nan=0.0, posinf=0.0, neginf=0.0)


def _nonzero_mean(loss: Tensor) -> Tensor:
    """Per image: sum over the non-zero entries / their count (at least 1);
    then the mean over images. ``loss`` is (B, ...)."""
    loss = loss.flatten(1)
    count = (loss != 0.0).to(loss).sum(-1).clamp(min=1.0)
    return divide_no_nan(loss.sum(-1), count).mean()


def gumbel_topk(logits: Tensor,
                k: int,
                generator: Optional[torch.Generator] = None) -> Tensor:
    """Indices (B, k) of ``k`` draws without replacement from
    softmax(``logits``) (B, L) per row, by the Gumbel-top-k trick (official
    ``_gumbel_topk_sample``). Uniform noise comes from ``generator`` when
    given (on the generator's device, then moved), else the global RNG."""
    gen_device = logits.device if generator is None else generator.device
    uniform = torch.rand(logits.shape, generator=generator,
                         dtype=logits.dtype, device=gen_device)
    noise = -torch.log(-torch.log(uniform.to(logits.device)))
    return torch.topk(logits + noise, k)[1]


def _sample_logits(inverse_area: Tensor, void: Tensor,
                   temperature: float) -> Tensor:
    """Sampling logits log(1 / GT mask area) x ``temperature``, void pixels
    pushed down by :data:`SOFTMAX_MASKING_CONSTANT`; (B, L)."""
    logits = torch.log(inverse_area) * temperature
    return logits + void.to(logits) * SOFTMAX_MASKING_CONSTANT


@torch.no_grad()
def pq_matching(pred_logits: Tensor,
                pred_masks: Tensor,
                labels: Tensor,
                masks: Tensor,
                masking_void_pixel: bool = True
                ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """One image's PQ-style one-to-one matching (official
    ``HungarianMatcher``, MaX-DeepLab Eq. 6).

    Similarity = mask similarity x class similarity, the cost its negative:
    mask similarity = 2 |p ∩ m| / (|p| + |m|) of the softmax-over-queries
    mask probabilities p (void pixels zeroed) and GT masks m (eps 1e-5 in
    the denominator); class similarity = softmax probability of the GT
    class (void column dropped). mmdet's ``HungarianAssigner`` returns no
    matched similarities, which the loss weights need, so scipy's
    ``linear_sum_assignment`` is called here.

    Args:
        pred_logits (Tensor): (N, C + 1) class logits, void last.
        pred_masks (Tensor): (N, H, W) mask logits.
        labels (Tensor): (M,) GT classes.
        masks (Tensor): (M, H, W) GT masks.
        masking_void_pixel (bool): zero p outside every GT mask.

    Returns:
        tuple[Tensor]: query indices, GT indices (int64, min(N, M) each,
        query indices ascending), matched mask similarity ("dice") and
        matched class probability.
    """
    class_sim = pred_logits.float().softmax(-1)[:, :-1][:, labels]  # (N, M)
    prob = pred_masks.float().softmax(0).flatten(1)  # (N, HW)
    target = masks.to(prob).flatten(1)  # (M, HW)
    if masking_void_pixel:
        prob = prob * (target.sum(0, keepdim=True) > 0).to(prob)
    intersection = torch.einsum('nc,mc->nm', prob, target)
    denominator = (prob.sum(-1)[:, None] + target.sum(-1)[None, :]) / 2.0
    mask_sim = intersection / (denominator + 1e-5)
    cost = -(mask_sim * class_sim)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    rows = torch.as_tensor(rows, dtype=torch.int64, device=pred_logits.device)
    cols = torch.as_tensor(cols, dtype=torch.int64, device=pred_logits.device)
    return rows, cols, mask_sim[rows, cols], class_sim[rows, cols]


def _as_tensor_masks(masks, name: str) -> Tensor:
    if isinstance(masks, BitmapMasks):
        return torch.from_numpy(masks.masks).bool()
    if isinstance(masks, Tensor):
        return masks.bool()
    raise TypeError(f'kmax_loss.py: {name} must be BitmapMasks or a Tensor, '
                    f'got {type(masks).__name__}.')


def _pad_subsample(tensor: Tensor, shape: Tuple[int, int], stride: int,
                   value) -> Tensor:
    """``tensor`` (..., h, w) padded bottom/right with ``value`` to
    ``shape``, then every ``stride``-th pixel."""
    h, w = tensor.shape[-2:]
    if h > shape[0] or w > shape[1]:
        raise ValueError(f'kmax_loss.py: a GT map is {(h, w)}, larger than '
                         f'batch_input_shape {tuple(shape)}.')
    tensor = F.pad(tensor, (0, shape[1] - w, 0, shape[0] - h), value=value)
    return tensor[..., ::stride, ::stride]


def targets_from_data_samples(batch_data_samples: Sequence,
                              num_things_classes: int,
                              num_classes: int,
                              stride: int = 4,
                              ignore_index: int = 255) -> List[dict]:
    """Official kMaX targets from mmdet panoptic (or mmseg semantic) samples.

    As ``PanoptickMaXDeepLabDatasetMapper``: every GT map is padded
    bottom/right with void to the ``batch_input_shape`` of the sample's
    metainfo (else its own size), then sub-sampled ``[::stride, ::stride]``
    (the official 4x down-sampled supervision); one mask per non-crowd thing
    (``gt_instances.masks``/``labels``) and one per stuff class present in
    ``gt_sem_seg`` (labels ``num_things_classes`` .. ``num_classes - 1``);
    masks left empty by the sub-sampling are dropped; the semantic target is
    the class of those masks and -1 elsewhere (void, crowd, padding).

    Args:
        batch_data_samples (Sequence): ``DetDataSample`` with
            ``gt_instances`` (``masks`` as ``BitmapMasks`` or a tensor,
            ``labels``) and ``gt_sem_seg`` (``sem_seg`` or ``data``,
            (1, H, W)); a sample without ``gt_instances`` (e.g. mmseg's
            ``SegDataSample``) has stuff only.
        num_things_classes (int): thing classes (labels below it).
        num_classes (int): thing + stuff classes.
        stride (int): sub-sampling of the GT maps. Defaults to 4.
        ignore_index (int): void label of ``gt_sem_seg``. Defaults to 255.

    Returns:
        list[dict]: per image ``labels`` (M,) int64, ``masks`` (M, h, w)
        bool and ``semantic_masks`` (h, w) int64, h = ceil(H_pad / stride).
    """
    targets = []
    for sample in batch_data_samples:
        sem_field = sample.gt_sem_seg
        sem = sem_field.sem_seg if 'sem_seg' in sem_field else sem_field.data
        sem = sem[0].long()  # (H, W)
        shape = tuple(sample.metainfo.get('batch_input_shape',
                                          sem.shape[-2:]))
        sem = _pad_subsample(sem, shape, stride, ignore_index)

        labels, masks = [], []
        if 'gt_instances' in sample:
            things = sample.gt_instances
            thing_masks = _as_tensor_masks(things.masks,
                                           'gt_instances.masks')
            if len(thing_masks) != len(things.labels):
                raise ValueError(
                    f'kmax_loss.py: gt_instances has {len(things.labels)} '
                    f'labels but {len(thing_masks)} masks.')
            thing_masks = _pad_subsample(thing_masks.to(sem.device), shape,
                                         stride, False)
            labels += [int(label) for label in things.labels]
            masks += list(thing_masks)
        for label in torch.unique(sem).tolist():
            if num_things_classes <= label < num_classes:
                labels.append(label)
                masks.append(sem == label)
        keep = [i for i, mask in enumerate(masks) if mask.any()]
        labels = torch.tensor([labels[i] for i in keep], dtype=torch.int64,
                              device=sem.device)
        masks = (torch.stack([masks[i] for i in keep]) if keep else
                 sem.new_zeros((0, ) + tuple(sem.shape), dtype=torch.bool))
        semantic = torch.full_like(sem, -1)
        for label, mask in zip(labels, masks):
            semantic[mask] = label
        targets.append(dict(labels=labels, masks=masks,
                            semantic_masks=semantic))
    return targets


def _float(outputs: Dict) -> Dict:
    """The outputs in fp32, as the official loss runs outside autocast."""
    return {
        key: ([_float(aux) for aux in value] if key == 'aux_outputs' else
              value.float())
        for key, value in outputs.items()
    }


def class_loss(logits: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Softmax cross-entropy (B, N), x 0.75 for non-void and 0.25 for void
    targets (official ``focal_cross_entropy_loss``, gamma 0), x ``weight``
    (the matched dice, PQ's RQ term), non-zero mean per image."""
    loss = F.cross_entropy(logits.transpose(1, 2), target, reduction='none')
    void = (target == logits.shape[-1] - 1).to(loss)
    alpha = CLASS_ALPHA * (1.0 - void) + (1.0 - CLASS_ALPHA) * void
    return _nonzero_mean(alpha * loss * weight)


def dice_loss(mask_logits: Tensor, target: Tensor, void: Tensor,
              weight: Tensor, masking_void_pixel: bool = True) -> Tensor:
    """1 - dice (smooth 1) of softmax-over-queries masks (B, N, HW) with void
    pixels zeroed, x ``weight`` (matched class probability, PQ's SQ term),
    summed over queries x 0.75 / N, mean over images (official
    ``dice_loss``)."""
    prob = mask_logits.softmax(1)
    if masking_void_pixel:
        prob = prob.masked_fill(void.unsqueeze(1), 0)
    intersection = 2 * (prob * target).sum(-1) + 1.0
    denominator = prob.sum(-1) + target.sum(-1) + 1.0
    loss = (1.0 - divide_no_nan(intersection, denominator)) * weight
    return (loss.sum(1) * DICE_FACTOR / prob.shape[1]).mean()


def mask_id_loss(mask_logits: Tensor, target: Tensor, void: Tensor) -> Tensor:
    """Mask-ID cross-entropy: per pixel, softmax CE over the N queries
    against the (normalised) GT assignment; void pixels 0; non-zero mean
    per image (official ``softmax_ce_loss``)."""
    loss = F.cross_entropy(mask_logits, target, reduction='none')  # (B, HW)
    return _nonzero_mean(loss.masked_fill(void, 0))


@MODELS.register_module()
class KMaXCriterion(nn.Module):
    """kMaX-DeepLab training losses (official ``SetCriterion``).

    ``forward(outputs, batch_data_samples)`` builds the targets
    (:func:`targets_from_data_samples`), matches the final layer
    (:func:`pq_matching`) and returns the weighted losses of the final
    layer (``loss_cls``, ``loss_dice``, ``loss_mask``, ``loss_insdis``,
    ``loss_aux_semantic``) and of each ``outputs['aux_outputs'][i]``
    (``d{i}.loss_cls``, ... without the aux semantic term), reusing the
    final matching for them (``share_final_matching``, official default).

    ``outputs`` as the official ``kMaXTransformerDecoder``: ``pred_logits``
    (B, N, C + 1), ``pred_masks`` (B, N, h, w), ``pixel_feature``
    (B, D, h, w, L2-normalised), ``aux_outputs`` (list of dicts with the
    same three keys at the final size) and ``aux_semantic_pred``
    (B, C + 1, h', w'; h' = h or (h - 1) / s + 1).

    Terms: ``cls`` :func:`class_loss`; ``dice`` :func:`dice_loss`; ``mask``
    :func:`mask_id_loss`; ``insdis`` pixel-wise instance discrimination
    (``insdis_sample_k`` pixels drawn with probability ∝ area^-T of their
    GT mask, T = ``insdis_sample_temperature``, soft-target CE of the
    feature similarity / 0.3 against the same-mask matrix normalised per
    column); ``aux_semantic`` cross-entropy of ``aux_semantic_pred`` on
    ``aux_semantic_sample_k`` pixels drawn the same way (all pixels if 0).
    A term whose weight is 0 is not computed. Official names: ``loss_ce``
    is ``loss_cls``, ``loss_pixel_insdis`` is ``loss_insdis``, ``_i`` is
    ``d{i}.``. Losses are computed in fp32 outside autocast (official).

    Args:
        num_things_classes (int): thing classes (labels first).
        num_stuff_classes (int): stuff classes.
        loss_weights (dict, optional): overrides of ``cls`` 3, ``dice`` 3,
            ``mask`` 0.3, ``insdis`` 1, ``aux_semantic`` 1.
        no_object_weight (float): lower clamp of the matched class
            probability and dice weights. Defaults to 1e-5.
        share_final_matching (bool): aux layers use the final matching.
            Defaults to True.
        deep_supervision (bool): losses of ``aux_outputs``. Defaults to True.
        insdis_sample_temperature, aux_semantic_sample_temperature (float):
            Defaults to 1.5, 2.0.
        insdis_sample_k, aux_semantic_sample_k (int): Defaults to 4096.
        masking_void_pixel (bool): zero void pixels' mask probabilities in
            matching and dice. Defaults to True.
        target_stride (int): GT sub-sampling of
            :func:`targets_from_data_samples`. Defaults to 4.
        ignore_index (int): void label of ``gt_sem_seg``. Defaults to 255.
        seed (int, optional): seeds :attr:`generator`, the source of the
            pixel sampling; None uses the global RNG (as the official).
    """
    DEFAULT_LOSS_WEIGHTS = dict(cls=3.0, dice=3.0, mask=0.3, insdis=1.0,
                                aux_semantic=1.0)

    def __init__(self,
                 num_things_classes: int,
                 num_stuff_classes: int,
                 loss_weights: Optional[dict] = None,
                 no_object_weight: float = 1e-5,
                 share_final_matching: bool = True,
                 deep_supervision: bool = True,
                 insdis_sample_temperature: float = 1.5,
                 insdis_sample_k: int = 4096,
                 aux_semantic_sample_temperature: float = 2.0,
                 aux_semantic_sample_k: int = 4096,
                 masking_void_pixel: bool = True,
                 target_stride: int = 4,
                 ignore_index: int = 255,
                 seed: Optional[int] = None) -> None:
        super().__init__()
        loss_weights = dict(loss_weights or {})
        unknown = set(loss_weights) - set(self.DEFAULT_LOSS_WEIGHTS)
        if unknown:
            raise ValueError(
                f'kmax_loss.py: unknown loss_weights {sorted(unknown)}; '
                f'expected some of {sorted(self.DEFAULT_LOSS_WEIGHTS)}')
        self.loss_weights = {**self.DEFAULT_LOSS_WEIGHTS, **loss_weights}
        self.num_things_classes = num_things_classes
        self.num_classes = num_things_classes + num_stuff_classes
        self.no_object_weight = no_object_weight
        self.share_final_matching = share_final_matching
        self.deep_supervision = deep_supervision
        self.insdis_sample_temperature = insdis_sample_temperature
        self.insdis_sample_k = insdis_sample_k
        self.aux_semantic_sample_temperature = aux_semantic_sample_temperature
        self.aux_semantic_sample_k = aux_semantic_sample_k
        self.masking_void_pixel = masking_void_pixel
        self.target_stride = target_stride
        self.ignore_index = ignore_index
        self.generator = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(seed)

    def forward(self, outputs: Dict, batch_data_samples: Sequence
                ) -> Dict[str, Tensor]:
        targets = targets_from_data_samples(
            batch_data_samples, self.num_things_classes, self.num_classes,
            self.target_stride, self.ignore_index)
        return self.loss_by_targets(outputs, targets)

    def match(self, outputs: Dict, targets: List[dict]
              ) -> List[Tuple[Tensor, Tensor, Tensor, Tensor]]:
        """:func:`pq_matching` of every image."""
        return [
            pq_matching(logits, masks, target['labels'], target['masks'],
                        self.masking_void_pixel)
            for logits, masks, target in zip(
                outputs['pred_logits'], outputs['pred_masks'], targets)
        ]

    def loss_by_targets(self, outputs: Dict,
                        targets: List[dict]) -> Dict[str, Tensor]:
        """Weighted losses from official-format ``targets`` (see
        :func:`targets_from_data_samples`)."""
        size = tuple(outputs['pred_masks'].shape[-2:])
        for target in targets:
            if tuple(target['masks'].shape[-2:]) != size:
                raise ValueError(
                    f'kmax_loss.py: GT masks are '
                    f'{tuple(target["masks"].shape[-2:])} but pred_masks '
                    f'{size}; the targets must be at the mask resolution '
                    '(target_stride).')
        if (self.loss_weights['aux_semantic'] > 0
                and 'aux_semantic_pred' not in outputs):
            raise ValueError(
                'kmax_loss.py: outputs lack aux_semantic_pred; give it or '
                'set loss_weights aux_semantic=0.')
        with torch.autocast(outputs['pred_masks'].device.type,
                            enabled=False):
            return self._losses(_float(outputs), targets)

    def _losses(self, outputs: Dict, targets: List[dict]
                ) -> Dict[str, Tensor]:
        matches = self.match(outputs, targets)
        processed = self.process_targets(outputs, targets, matches)
        losses = self._layer_losses(outputs, processed, '')
        if self.loss_weights['aux_semantic'] > 0:
            semantic = torch.stack([t['semantic_masks'] for t in targets])
            semantic = semantic.masked_fill(semantic == -1, self.num_classes)
            losses['loss_aux_semantic'] = self.loss_weights[
                'aux_semantic'] * self._aux_semantic_loss(
                    outputs['aux_semantic_pred'], semantic, processed)
        if self.deep_supervision:
            for i, aux in enumerate(outputs.get('aux_outputs', [])):
                if not self.share_final_matching:
                    processed = self.process_targets(
                        aux, targets, self.match(aux, targets))
                losses.update(self._layer_losses(aux, processed, f'd{i}.'))
        return losses

    @torch.no_grad()
    def process_targets(self, outputs: Dict, targets: List[dict],
                        matches: List[tuple]) -> Dict[str, Tensor]:
        """Targets padded to the N queries (official ``process_gt``).

        Returns ``masks`` (B, N, H, W, matched GT masks normalised to sum
        to 1 per pixel), ``labels`` (B, N, void = C when unmatched),
        ``class_weight`` (B, N: matched dice; unmatched: the query's IoU
        with void; clamped >= ``no_object_weight``), ``mask_weight`` (B, N:
        matched class probability clamped >= ``no_object_weight``, 0 when
        unmatched), ``void`` (B, H, W) and ``inverse_area`` (B, H, W: H W /
        area of the pixel's GT mask, >= 1).
        """
        pred_masks = outputs['pred_masks'].detach()
        batch = torch.cat([
            torch.full_like(rows, i) for i, (rows, *_) in enumerate(matches)
        ])
        rows = torch.cat([m[0] for m in matches])
        masks = torch.zeros_like(pred_masks)
        masks[batch, rows] = torch.cat(
            [t['masks'][m[1]] for t, m in zip(targets, matches)]).to(masks)
        masks = masks / masks.sum(1, keepdim=True).clamp(min=1.0)

        mask_weight = pred_masks.new_zeros(pred_masks.shape[:2])
        mask_weight[batch, rows] = torch.cat(
            [m[3] for m in matches]).clamp(min=self.no_object_weight).to(
                mask_weight)

        void = masks.sum(1) < 1  # (B, H, W)
        area = masks.sum((2, 3))  # (B, N)
        pixel_area = torch.einsum('bnhw,bn->bhw', masks, area)
        inverse_area = (pixel_area.shape[1] * pixel_area.shape[2]
                        ) / pixel_area.clamp(min=1.0)

        labels = torch.full(pred_masks.shape[:2], self.num_classes,
                            dtype=torch.int64, device=pred_masks.device)
        labels[batch, rows] = torch.cat(
            [t['labels'][m[1]] for t, m in zip(targets, matches)]).to(labels)

        prob = pred_masks.softmax(1).flatten(2)  # (B, N, HW)
        void_iou = torch.einsum('bnl,bl->bn', prob,
                                void.flatten(1).to(prob)) / (
                                    prob.sum(-1) + 1e-5)
        void_iou[batch, rows] = torch.cat([m[2] for m in matches]).to(
            void_iou)
        class_weight = void_iou.clamp(min=self.no_object_weight)
        return dict(masks=masks, labels=labels, class_weight=class_weight,
                    mask_weight=mask_weight, void=void,
                    inverse_area=inverse_area)

    def _layer_losses(self, outputs: Dict, processed: Dict,
                      prefix: str) -> Dict[str, Tensor]:
        weights = self.loss_weights
        void = processed['void'].flatten(1)
        masks = processed['masks'].flatten(2)
        mask_logits = outputs['pred_masks'].flatten(2)
        losses = {
            'loss_cls': weights['cls'] * class_loss(
                outputs['pred_logits'], processed['labels'],
                processed['class_weight']),
            'loss_mask': weights['mask'] * mask_id_loss(
                mask_logits, masks, void),
            'loss_dice': weights['dice'] * dice_loss(
                mask_logits, masks, void, processed['mask_weight'],
                self.masking_void_pixel),
        }
        if weights['insdis'] > 0:
            losses['loss_insdis'] = weights['insdis'] * self._insdis_loss(
                outputs['pixel_feature'], processed)
        return {prefix + name: value for name, value in losses.items()}

    def _insdis_loss(self, pixel_feature: Tensor, processed: Dict) -> Tensor:
        """Pixel-wise instance discrimination (official
        ``pixelwise_insdis_loss``, MaX-DeepLab's auxiliary instance
        discrimination on sampled pixels)."""
        feature = pixel_feature.flatten(2)  # (B, D, HW)
        masks = processed['masks'].flatten(2)  # (B, N, HW)
        logits = _sample_logits(processed['inverse_area'].flatten(1),
                                processed['void'].flatten(1),
                                self.insdis_sample_temperature)
        index = gumbel_topk(logits, min(self.insdis_sample_k,
                                        logits.shape[1]), self.generator)
        gt = masks.gather(2, index[:, None].expand(-1, masks.shape[1], -1))
        gt_sim = torch.einsum('bnk,bnj->bkj', gt, gt)  # (B, K, K)
        gt_sim = gt_sim / gt_sim.sum(1, keepdim=True).clamp(min=1.0)
        pred = feature.gather(
            2, index[:, None].expand(-1, feature.shape[1], -1))
        pred_sim = torch.einsum('bck,bcj->bkj', pred,
                                pred) / INSDIS_TEMPERATURE
        return _nonzero_mean(
            F.cross_entropy(pred_sim, gt_sim, reduction='none'))

    def _aux_semantic_loss(self, logits: Tensor, semantic: Tensor,
                           processed: Dict) -> Tensor:
        """Semantic cross-entropy on sampled pixels, class C ignored
        (official ``aux_semantic_loss``); a lower-resolution prediction
        takes every s-th GT pixel, s = (W - 1) / (w - 1)."""
        void, inverse_area = processed['void'], processed['inverse_area']
        if logits.shape[-2:] != semantic.shape[-2:]:
            stride = (semantic.shape[-1] - 1) // (logits.shape[-1] - 1)
            if (semantic.shape[-2] - 1) // (logits.shape[-2] - 1) != stride:
                raise ValueError(
                    f'kmax_loss.py: aux_semantic_pred '
                    f'{tuple(logits.shape[-2:])} is not a strided '
                    f'sub-grid of the targets {tuple(semantic.shape[-2:])}.')
            semantic = semantic[:, ::stride, ::stride]
            void = void[:, ::stride, ::stride]
            inverse_area = inverse_area[:, ::stride, ::stride]
        logits = logits.flatten(2)  # (B, C, L)
        semantic = semantic.flatten(1)  # (B, L)
        if self.aux_semantic_sample_k > 0:
            sample_logits = _sample_logits(
                inverse_area.flatten(1), void.flatten(1),
                self.aux_semantic_sample_temperature)
            index = gumbel_topk(
                sample_logits,
                min(self.aux_semantic_sample_k, sample_logits.shape[1]),
                self.generator)
            semantic = semantic.gather(1, index)
            logits = logits.gather(
                2, index[:, None].expand(-1, logits.shape[1], -1))
        loss = F.cross_entropy(
            logits, semantic, ignore_index=self.num_classes,
            reduction='none')
        return _nonzero_mean(loss)
