"""MonoDETR: monocular 3D detection with a depth-aware transformer.

"MonoDETR: Depth-guided Transformer for Monocular 3D Object Detection"
(Zhang et al., ICCV 2023, arXiv:2203.13310); official code
https://github.com/ZrrSkywalker/MonoDETR (``lib/models/monodetr/
monodetr.py``, ``MonoDETR``; setting ``configs/monodetr.yaml``).

MonoDINO-DETR is a MonoDETR fork, so MonoDETR is
:class:`~vitdense.models.detectors.MonoDINODETR` configured back: a
ResNet-50 (mmdet's, torchvision's key names; frozen BN, stem and stage 1
frozen as the official ``FrozenBatchNorm2d`` and ``train_backbone``) whose
stages 2-4 and one extra stride-2 conv give four levels through mmdet's
``ChannelMapper`` (the official ``input_proj``), a depth predictor on the
levels (:class:`~vitdense.models.layers.monodino_detr_layers.
MonoDETRDepthPredictor`), Deformable-DETR queries instead of DAB anchors;
encoder, depth-aware decoder, heads, losses and decoding are the same
modules. Parity-tested against the official code; different from it: no
device is hard-coded and vitdense's deformable attention runs on CPU too.
"""
import copy
from typing import Optional

from vitdense.models.detectors.monodino_detr import MonoDINODETR
from vitdense.registry import MODELS

__all__ = ['MonoDETR']

#: official backbone: torchvision ResNet-50, frozen BN, stages 2-4 trained
RESNET50 = dict(
    type='ResNet',
    depth=50,
    num_stages=4,
    out_indices=(1, 2, 3),
    frozen_stages=1,
    norm_cfg=dict(type='BN', requires_grad=False),
    norm_eval=True,
    style='pytorch',
    zero_init_residual=False,  # torchvision's default
    init_cfg=dict(
        type='Pretrained',
        checkpoint='https://download.pytorch.org/models/'
        'resnet50-0676ba61.pth'))


def channel_mapper(in_channels, embed_dims: int = 256,
                   num_levels: int = 4) -> dict:
    """The official ``input_proj`` as mmdet's ChannelMapper: a 1x1 conv +
    GN(32) per backbone map, then 3x3 stride-2 conv + GN levels (the first
    on the last backbone map), convs with bias, no activation."""
    return dict(
        type='ChannelMapper',
        in_channels=list(in_channels),
        out_channels=embed_dims,
        kernel_size=1,
        act_cfg=None,
        bias=True,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=num_levels)


@MODELS.register_module()
class MonoDETR(MonoDINODETR):
    """MonoDETR detector (official ``MonoDETR`` with ``use_dab: False``,
    ``num_feature_levels: 4``, 50 queries x 11 groups, box refinement).

    Args:
        backbone (dict, optional): Default: :data:`RESNET50` (ImageNet
            weights of torchvision, as the official).
        neck (dict, optional): Default: :func:`channel_mapper` of the
            ResNet-50 widths (512, 1024, 2048) to ``embed_dims``, 4 levels.
        use_dab (bool): Default: False (the official MonoDETR setting).
        **kwargs: the other arguments of
            :class:`~vitdense.models.detectors.MonoDINODETR` (widths,
            queries, groups, depth predictor, criterion, preprocessor).
    """

    def __init__(self,
                 backbone: Optional[dict] = None,
                 neck: Optional[dict] = None,
                 use_dab: bool = False,
                 **kwargs) -> None:
        if neck is None:
            neck = channel_mapper((512, 1024, 2048),
                                  kwargs.get('embed_dims', 256))
        super().__init__(
            backbone=copy.deepcopy(RESNET50) if backbone is None else backbone,
            neck=neck,
            use_dab=use_dab,
            **kwargs)
