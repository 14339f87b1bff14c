"""kMaX-DeepLab as an mmdet detector: panoptic and semantic segmentation.

"k-means Mask Transformer" (Yu et al., ECCV 2022, arXiv:2207.04044),
official PyTorch code https://github.com/bytedance/kmax-deeplab (commit
f8e1d04): the meta-architecture ``kMaXDeepLab`` in
``kmax_deeplab/kmax_model.py`` (normalise, zero-pad to the fixed
``INPUT.IMAGE_SIZE``, backbone -> kMaX head, ``SetCriterion`` in training,
mask resizing and panoptic/semantic/instance inference at test time).

Different from the official code: any input size. The batch is zero-padded
bottom/right (after normalisation, as the official) to a fixed ``pad_size``
(the official behaviour, e.g. 1281x1281) or, by default, only to a multiple
of ``size_divisor``; the head runs at that size (its relative positions are
computed per size), and the fusion head crops ``img_shape`` back and
resizes to ``ori_shape``. Official checkpoints convert with
``tools/model_converters/kmax2vitdense.py`` (``backbone.*`` and
``panoptic_head.*`` keys).
"""
import copy
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch.nn.functional as F
from mmdet.models.detectors.base import BaseDetector
from torch import Tensor

from vitdense.registry import MODELS

__all__ = ['KMaXDeepLab']


@MODELS.register_module()
class KMaXDeepLab(BaseDetector):
    """kMaX-DeepLab: backbone -> :class:`KMaXDeepLabHead` ->
    :class:`KMaXCriterion` (``loss``) or :class:`KMaXFusionHead`
    (``predict``).

    Why an mmdet detector (not an mmseg segmentor): panoptic training needs
    mmdet's panoptic data samples (thing masks in ``gt_instances``) and its
    panoptic metric, which an mmseg ``EncoderDecoder`` cannot carry; the
    other way round, nothing here is mmdet-specific, so the same detector
    takes mmseg's ``SegDataSample`` (stuff only) for semantic training.
    ``predict`` fills ``pred_panoptic_seg`` (PixelData ``sem_seg``, mmdet's
    panoptic metrics and visualizer) and, with ``test_cfg.semantic_on``,
    ``pred_sem_seg`` with the labels under both ``data`` (mmseg's
    ``IoUMetric`` / ``ValidatedIoUMetric`` and visualizer read it) and
    ``sem_seg`` (mmdet's ``DetLocalVisualizer`` reads that), so
    ``tools/test.py`` evaluates panoptic configs (mmdet scope) and semantic
    configs (mmseg scope) alike; ``instance_on`` fills ``pred_instances``
    (mmdet's ``CocoMetric``).

    Args:
        backbone (dict): a backbone returning at least 4 levels, finest
            first (strides 4 to 32).
        panoptic_head (dict): :class:`KMaXDeepLabHead`; its
            ``num_classes`` is set to things + stuff.
        num_things_classes (int): thing classes (the first labels).
            Defaults to 80 (COCO).
        num_stuff_classes (int): stuff classes. Defaults to 53 (COCO).
        criterion (dict, optional): :class:`KMaXCriterion` overrides
            (class numbers are filled in).
        panoptic_fusion_head (dict, optional): :class:`KMaXFusionHead`
            overrides (class numbers and ``test_cfg`` are filled in).
        pad_size (tuple[int, int], optional): (h, w) to pad every batch to
            (official fixed size); an image larger than it is an error.
            None (default) pads to a multiple of ``size_divisor`` only.
        size_divisor (int): padded sizes are multiples of it. Defaults
            to 1 (the data preprocessor's ``pad_size_divisor`` applies
            first).
        test_cfg (dict, optional): :class:`KMaXFusionHead` ``test_cfg``.
        data_preprocessor (dict, optional): e.g. mmdet's
            ``DetDataPreprocessor`` (mean = std = 127.5 as the official).
    """

    def __init__(self,
                 backbone: dict,
                 panoptic_head: dict,
                 num_things_classes: int = 80,
                 num_stuff_classes: int = 53,
                 criterion: Optional[dict] = None,
                 panoptic_fusion_head: Optional[dict] = None,
                 pad_size: Optional[Tuple[int, int]] = None,
                 size_divisor: int = 1,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        num_classes = num_things_classes + num_stuff_classes
        classes = dict(num_things_classes=num_things_classes,
                       num_stuff_classes=num_stuff_classes)
        head_cfg = self._fill('panoptic_head', panoptic_head,
                              dict(num_classes=num_classes))
        criterion_cfg = self._fill('criterion',
                                   dict(type='KMaXCriterion',
                                        **(criterion or {})), classes)
        fusion_cfg = self._fill(
            'panoptic_fusion_head',
            dict(type='KMaXFusionHead', **(panoptic_fusion_head or {})),
            dict(classes, test_cfg=test_cfg))
        if size_divisor < 1:
            raise ValueError('kmax_deeplab.py: size_divisor must be >= 1, '
                             f'got {size_divisor}')
        self.backbone = MODELS.build(backbone)
        self.panoptic_head = MODELS.build(head_cfg)
        self.criterion = MODELS.build(criterion_cfg)
        self.panoptic_fusion_head = MODELS.build(fusion_cfg)
        self.num_things_classes = num_things_classes
        self.num_stuff_classes = num_stuff_classes
        self.num_classes = num_classes
        self.pad_size = tuple(pad_size) if pad_size is not None else None
        self.size_divisor = size_divisor
        self.test_cfg = test_cfg

    @staticmethod
    def _fill(name: str, cfg: dict, values: dict) -> dict:
        """``cfg`` with ``values`` set; a different value given in ``cfg``
        is an error (the class numbers are stated once, here)."""
        cfg = copy.deepcopy(dict(cfg))
        for key, value in values.items():
            if key in cfg and cfg[key] is not None and cfg[key] != value:
                raise ValueError(
                    f'kmax_deeplab.py: {name}.{key} is {cfg[key]}, but '
                    f'KMaXDeepLab sets it to {value}; set the class numbers '
                    'on the detector (num_things_classes, '
                    'num_stuff_classes) and test_cfg on the detector only.')
            cfg[key] = value
        return cfg

    def _pad(self, batch_inputs: Tensor,
             batch_data_samples: Sequence) -> Tensor:
        """Zero-pad bottom/right to ``pad_size`` or a multiple of
        ``size_divisor``; ``batch_input_shape`` and ``pad_shape`` of every
        sample become the padded size (the criterion pads the GT and the
        fusion head crops ``img_shape`` from it)."""
        h, w = batch_inputs.shape[-2:]
        if self.pad_size is not None:
            if h > self.pad_size[0] or w > self.pad_size[1]:
                raise ValueError(
                    f'kmax_deeplab.py: a batch of {h}x{w} is larger than '
                    f'pad_size {self.pad_size[0]}x{self.pad_size[1]}; '
                    'raise pad_size or use pad_size=None (any size).')
            pad_h, pad_w = self.pad_size
        else:
            d = self.size_divisor
            pad_h, pad_w = math.ceil(h / d) * d, math.ceil(w / d) * d
        if (pad_h, pad_w) != (h, w):
            batch_inputs = F.pad(batch_inputs, (0, pad_w - w, 0, pad_h - h))
        for sample in batch_data_samples:
            sample.set_metainfo(dict(batch_input_shape=(pad_h, pad_w),
                                     pad_shape=(pad_h, pad_w)))
        return batch_inputs

    def extract_feat(self, batch_inputs: Tensor) -> Sequence[Tensor]:
        """Backbone levels, finest first."""
        return self.backbone(batch_inputs)

    def _forward(self, batch_inputs: Tensor,
                 batch_data_samples: Optional[Sequence] = None
                 ) -> Tuple[Tensor, Tensor]:
        """Final ``pred_logits`` (B, N, C + 1) and stride-4 ``pred_masks``
        (B, N, h, w) of the padded batch."""
        batch_inputs = self._pad(batch_inputs, batch_data_samples or [])
        outputs = self.panoptic_head(self.extract_feat(batch_inputs))
        return outputs['pred_logits'], outputs['pred_masks']

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: Sequence) -> Dict[str, Tensor]:
        """The :class:`KMaXCriterion` losses (final layer and ``d{i}.``
        for each aux layer)."""
        batch_inputs = self._pad(batch_inputs, batch_data_samples)
        outputs = self.panoptic_head(self.extract_feat(batch_inputs))
        stride = self.criterion.target_stride
        want = tuple(math.ceil(s / stride) for s in batch_inputs.shape[-2:])
        got = tuple(outputs['pred_masks'].shape[-2:])
        if got != want:
            raise ValueError(
                f'kmax_deeplab.py: the head predicts {got[0]}x{got[1]} masks '
                f'for a {batch_inputs.shape[-2]}x{batch_inputs.shape[-1]} '
                f'batch, but the targets are the padded GT sampled every '
                f'{stride} pixels ({want[0]}x{want[1]}); the backbone must '
                f'give ceil(size / 4) at stride 4 (set size_divisor, e.g. '
                '32, if it rounds sizes down).')
        return self.criterion(outputs, batch_data_samples)

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: Sequence,
                rescale: bool = True) -> Sequence:
        """Data samples with ``pred_panoptic_seg`` / ``pred_sem_seg`` /
        ``seg_logits`` / ``pred_instances`` as ``test_cfg`` switches them
        on, at ``ori_shape`` with ``rescale`` (else ``img_shape``)."""
        pred_logits, pred_masks = self._forward(batch_inputs,
                                                batch_data_samples)
        results = self.panoptic_fusion_head.predict(
            pred_logits, pred_masks, batch_data_samples, rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def add_pred_to_datasample(self, data_samples: Sequence,
                               results_list: List[dict]) -> Sequence:
        """:meth:`KMaXFusionHead.add_pred_to_datasample`, plus the semantic
        labels under ``pred_sem_seg.sem_seg`` for mmdet's visualizer."""
        data_samples = self.panoptic_fusion_head.add_pred_to_datasample(
            data_samples, results_list)
        for sample in data_samples:
            if 'pred_sem_seg' in sample:
                sample.pred_sem_seg.sem_seg = sample.pred_sem_seg.data
        return data_samples
