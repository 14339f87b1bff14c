"""kMaX-DeepLab inference: panoptic, semantic and instance results.

"k-means Mask Transformer" (Yu et al., ECCV 2022, arXiv:2207.04044),
official PyTorch code https://github.com/bytedance/kmax-deeplab (commit
f8e1d04): ``kMaXDeepLab.panoptic_inference`` / ``semantic_inference`` /
``instance_inference`` and the mask resizing of ``kMaXDeepLab.forward`` in
``kmax_deeplab/kmax_model.py`` (MaX-DeepLab's panoptic post-processor), with
the thresholds of ``kmax_deeplab/config.py``. Written here because mmdet's
``MaskFormerFusionHead`` uses sigmoid masks, a different segment order and
no stuff-overlap rule.

Different from the official code: results are in mmdet's/mmseg's formats
(panoptic ids ``label + instance_id * INSTANCE_OFFSET`` as mmdet's
``MaskFormerFusionHead``, void = number of classes; ``pred_sem_seg`` as
mmseg; instance boxes from the masks by mmdet's ``mask2bbox`` where the
official gives zeros); things are the labels below ``num_things_classes``
(mmdet's order); the image region is ``img_shape`` (the official derives it
from the longest side); instances come sorted by class score and at most
``queries x classes`` of them.
"""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.models.seg_heads.panoptic_fusion_heads import \
    BasePanopticFusionHead
from mmdet.structures.mask import mask2bbox
from mmengine.structures import InstanceData, PixelData
from torch import Tensor

from vitdense.registry import MODELS

__all__ = [
    'KMaXFusionHead', 'kmax_panoptic_inference', 'kmax_semantic_inference',
    'kmax_instance_inference'
]


def _panoptic_segments(mask_cls: Tensor, mask_pred: Tensor,
                       num_things_classes: int,
                       pixel_confidence_threshold: float,
                       class_threshold_thing: float,
                       class_threshold_stuff: float,
                       overlap_threshold: float, reorder_class_weight: float,
                       reorder_mask_weight: float
                       ) -> Tuple[Tensor, List[dict]]:
    """Segment map (H, W; 0 = void, ids from 1) and segments ``id``,
    ``category_id``, ``isthing``: the official ``panoptic_inference``."""
    cls_scores, cls_labels = mask_cls.softmax(-1)[:, :-1].max(-1)  # (N, )
    mask_scores = mask_pred.softmax(0)  # (N, H, W)
    binary = mask_scores > pixel_confidence_threshold
    binary_flat = binary.flatten(1).float()
    in_mask_score = (mask_scores.flatten(1) * binary_flat).sum(1) / (
        binary_flat.sum(1).clamp(min=1.0))
    reorder = (cls_scores**reorder_class_weight) * (
        in_mask_score**reorder_mask_weight)
    order = torch.argsort(reorder, dim=-1, descending=True)

    segments = torch.zeros(mask_pred.shape[-2:], dtype=torch.int32,
                           device=mask_pred.device)
    info, stuff_ids = [], {}
    for index in order.tolist():
        label = int(cls_labels[index])
        score = float(cls_scores[index])
        is_thing = label < num_things_classes
        threshold = (class_threshold_thing
                     if is_thing else class_threshold_stuff)
        mask = binary[index]
        new_mask = mask & (segments == 0)
        # new pixels must exceed ``overlap_threshold`` of the mask
        if not (score > threshold and new_mask.float().sum() >
                mask.float().sum() * overlap_threshold):
            continue
        if not is_thing and label in stuff_ids:  # merge stuff of one class
            segments[new_mask] = stuff_ids[label]
            continue
        segment_id = len(info) + 1
        if not is_thing:
            stuff_ids[label] = segment_id
        segments[new_mask] = segment_id
        info.append(dict(id=segment_id, category_id=label, isthing=is_thing))
    return segments, info


def kmax_panoptic_inference(mask_cls: Tensor,
                            mask_pred: Tensor,
                            num_things_classes: int,
                            pixel_confidence_threshold: float = 0.4,
                            class_threshold_thing: float = 0.7,
                            class_threshold_stuff: float = 0.5,
                            overlap_threshold: float = 0.8,
                            reorder_class_weight: float = 1.0,
                            reorder_mask_weight: float = 1.0) -> Tensor:
    """One image's panoptic map in mmdet's encoding.

    Softmax over the queries; a query's mask = probability >
    ``pixel_confidence_threshold``, its class = arg-max of the softmax
    without void. Queries are visited by cls score^a x mean in-mask
    probability^b (descending) and kept when the score exceeds the thing or
    stuff threshold and their pixels not taken yet exceed
    ``overlap_threshold`` x the mask; a stuff class already present takes
    the new pixels into its segment.

    Args:
        mask_cls (Tensor): (N, C + 1) class logits, void last.
        mask_pred (Tensor): (N, H, W) mask logits.
        num_things_classes (int): labels below it are things.

    Returns:
        Tensor: (H, W) int32, ``label`` for stuff, ``label + k *
        INSTANCE_OFFSET`` for the k-th thing (k from 1), C for void.
    """
    segments, info = _panoptic_segments(
        mask_cls, mask_pred, num_things_classes, pixel_confidence_threshold,
        class_threshold_thing, class_threshold_stuff, overlap_threshold,
        reorder_class_weight, reorder_mask_weight)
    panoptic = torch.full_like(segments, mask_cls.shape[-1] - 1)
    instance_id = 0
    for segment in info:
        value = segment['category_id']
        if segment['isthing']:
            instance_id += 1
            value += instance_id * INSTANCE_OFFSET
        panoptic[segments == segment['id']] = value
    return panoptic


def kmax_semantic_inference(mask_cls: Tensor, mask_pred: Tensor) -> Tensor:
    """(C, H, W) class probabilities: sum over queries of the class softmax
    without void x the softmax-over-queries mask (official
    ``semantic_inference``)."""
    return torch.einsum('qc,qhw->chw',
                        mask_cls.softmax(-1)[:, :-1], mask_pred.softmax(0))


def kmax_instance_inference(mask_cls: Tensor,
                            mask_pred: Tensor,
                            num_things_classes: int,
                            max_per_image: int = 100,
                            things_only: bool = True,
                            pixel_confidence_threshold: float = 0.4
                            ) -> InstanceData:
    """Top-``max_per_image`` (query, class) pairs by class probability
    (without void), things only if ``things_only``; mask = softmax over the
    queries > ``pixel_confidence_threshold``; score = class probability x
    mean in-mask probability (official ``instance_inference``).

    Returns:
        InstanceData: ``masks`` (K, H, W) bool, ``labels``, ``scores``,
        ``bboxes`` (K, 4; mmdet's ``mask2bbox``).
    """
    num_classes = mask_cls.shape[-1] - 1
    prob = mask_pred.softmax(0)
    scores = mask_cls.softmax(-1)[:, :-1].flatten()
    scores, index = scores.topk(min(max_per_image, scores.numel()))
    labels = index % num_classes
    prob = prob[torch.div(index, num_classes, rounding_mode='floor')]
    if things_only:
        keep = labels < num_things_classes
        scores, labels, prob = scores[keep], labels[keep], prob[keep]
    masks = prob > pixel_confidence_threshold
    masks_flat = masks.flatten(1).float()
    mask_scores = (prob.flatten(1) * masks_flat).sum(1) / (
        masks_flat.sum(1) + 1e-6)
    return InstanceData(masks=masks, labels=labels, scores=scores *
                        mask_scores, bboxes=mask2bbox(masks))


@MODELS.register_module()
class KMaXFusionHead(BasePanopticFusionHead):
    """kMaX-DeepLab post-processing as an mmdet panoptic fusion head.

    ``predict`` takes the final ``pred_logits`` (B, N, C + 1) and
    ``pred_masks`` (B, N, h, w) at the network's resolution and, as the
    official ``kMaXDeepLab.forward``, resizes the masks bilinearly to the
    ``batch_input_shape`` (``align_corners`` when its width is odd, as the
    official), crops ``img_shape`` and, with ``rescale``, resizes to
    ``ori_shape`` (same ``align_corners``); then per image
    :func:`kmax_panoptic_inference` (``pan_results``),
    :func:`kmax_semantic_inference` (``seg_logits`` probabilities and
    ``sem_results`` labels) and :func:`kmax_instance_inference`
    (``ins_results``) as ``test_cfg`` switches them on.

    Args:
        num_things_classes, num_stuff_classes (int): as mmdet.
        test_cfg (dict, optional): overrides of ``panoptic_on`` True,
            ``semantic_on`` False, ``instance_on`` False,
            ``pixel_confidence_threshold`` 0.4, ``class_threshold_thing``
            0.7, ``class_threshold_stuff`` 0.5, ``overlap_threshold`` 0.8,
            ``reorder_class_weight`` 1, ``reorder_mask_weight`` 1,
            ``max_per_image`` 100 (instances; things only when
            ``panoptic_on``, as the official).
    """
    DEFAULT_TEST_CFG = dict(panoptic_on=True, semantic_on=False,
                            instance_on=False, pixel_confidence_threshold=0.4,
                            class_threshold_thing=0.7,
                            class_threshold_stuff=0.5, overlap_threshold=0.8,
                            reorder_class_weight=1.0, reorder_mask_weight=1.0,
                            max_per_image=100)
    _PANOPTIC_KEYS = ('pixel_confidence_threshold', 'class_threshold_thing',
                      'class_threshold_stuff', 'overlap_threshold',
                      'reorder_class_weight', 'reorder_mask_weight')

    def __init__(self,
                 num_things_classes: int = 80,
                 num_stuff_classes: int = 53,
                 test_cfg: dict = None,
                 init_cfg: dict = None,
                 **kwargs) -> None:
        test_cfg = dict(test_cfg or {})
        unknown = set(test_cfg) - set(self.DEFAULT_TEST_CFG)
        if unknown:
            raise ValueError(
                f'kmax_postprocess.py: unknown test_cfg keys '
                f'{sorted(unknown)}; expected some of '
                f'{sorted(self.DEFAULT_TEST_CFG)}')
        super().__init__(num_things_classes=num_things_classes,
                         num_stuff_classes=num_stuff_classes,
                         test_cfg={**self.DEFAULT_TEST_CFG, **test_cfg},
                         init_cfg=init_cfg, **kwargs)

    def loss(self, **kwargs) -> dict:
        """No training loss (the criterion is :class:`KMaXCriterion`)."""
        return dict()

    def predict(self,
                mask_cls_results: Tensor,
                mask_pred_results: Tensor,
                batch_data_samples: Sequence,
                rescale: bool = True,
                **kwargs) -> List[Dict]:
        """Per image a dict with ``pan_results`` (PixelData ``sem_seg``
        (1, H, W)), ``sem_results`` (PixelData ``data`` (1, H, W) labels),
        ``seg_logits`` (PixelData ``data`` (C, H, W) probabilities) and
        ``ins_results`` (InstanceData), as ``test_cfg`` switches them on."""
        cfg = self.test_cfg
        if mask_cls_results.shape[-1] != self.num_classes + 1:
            raise ValueError(
                f'kmax_postprocess.py: pred_logits have '
                f'{mask_cls_results.shape[-1]} classes, expected '
                f'num_things_classes + num_stuff_classes + 1 (void) = '
                f'{self.num_classes + 1}.')
        metas = [sample.metainfo for sample in batch_data_samples]
        if 'batch_input_shape' not in metas[0]:
            raise ValueError(
                'kmax_postprocess.py: the data samples lack '
                'batch_input_shape (set by the data preprocessor); the '
                'masks are resized to it before cropping img_shape.')
        pad_h, pad_w = metas[0]['batch_input_shape']
        align_corners = pad_w % 2 == 1
        mask_pred_results = F.interpolate(
            mask_pred_results, size=(pad_h, pad_w), mode='bilinear',
            align_corners=align_corners)
        panoptic_cfg = {key: cfg[key] for key in self._PANOPTIC_KEYS}
        results = []
        for mask_cls, mask_pred, meta in zip(mask_cls_results,
                                             mask_pred_results, metas):
            img_h, img_w = meta['img_shape'][:2]
            mask_pred = mask_pred[:, :img_h, :img_w]
            if rescale:
                mask_pred = F.interpolate(
                    mask_pred[None], size=tuple(meta['ori_shape'][:2]),
                    mode='bilinear', align_corners=align_corners)[0]
            result = dict()
            if cfg['semantic_on']:
                probs = kmax_semantic_inference(mask_cls, mask_pred)
                result['seg_logits'] = PixelData(data=probs)
                result['sem_results'] = PixelData(
                    data=probs.argmax(0, keepdim=True))
            if cfg['panoptic_on']:
                panoptic = kmax_panoptic_inference(
                    mask_cls, mask_pred, self.num_things_classes,
                    **panoptic_cfg)
                result['pan_results'] = PixelData(sem_seg=panoptic[None])
            if cfg['instance_on']:
                result['ins_results'] = kmax_instance_inference(
                    mask_cls, mask_pred, self.num_things_classes,
                    cfg['max_per_image'], cfg['panoptic_on'],
                    cfg['pixel_confidence_threshold'])
            results.append(result)
        return results

    @staticmethod
    def add_pred_to_datasample(batch_data_samples: Sequence,
                               results_list: List[Dict]) -> Sequence:
        """Set ``pred_panoptic_seg`` (mmdet's panoptic metric),
        ``pred_sem_seg`` and ``seg_logits`` (mmseg's ``IoUMetric``) and
        ``pred_instances`` (mmdet's ``CocoMetric``) from :meth:`predict`."""
        fields = dict(pan_results='pred_panoptic_seg',
                      sem_results='pred_sem_seg', seg_logits='seg_logits',
                      ins_results='pred_instances')
        for sample, results in zip(batch_data_samples, results_list):
            for key, value in results.items():
                setattr(sample, fields[key], value)
        return batch_data_samples
