"""kMaX-DeepLab head: pixel decoder + k-means transformer decoder.

"k-means Mask Transformer" (Yu et al., ECCV 2022, arXiv:2207.04044);
official code https://github.com/bytedance/kmax-deeplab (commit f8e1d04,
``modeling/meta_arch/kmax_deeplab_head.py``). The blocks live in
:mod:`vitdense.models.layers.kmax_layers`; unlike the official head this one
runs at any input size (see there). Official checkpoints convert with
``tools/model_converters/kmax2vitdense.py``.
"""
from typing import Dict, Optional, Sequence

from mmengine.model import BaseModule
from torch import Tensor

from vitdense.models.layers.kmax_layers import (KMaXPixelDecoder,
                                                KMaXTransformerDecoder)
from vitdense.registry import MODELS


@MODELS.register_module()
class KMaXDeepLabHead(BaseModule):
    """kMaX-DeepLab network on top of a backbone's multi-level features.

    Args:
        in_channels (Sequence[int]): backbone channels, finest level first
            (ResNet-50: (256, 512, 1024, 2048) at strides 4-32).
        num_classes (int): classes without void. Defaults to 133 (COCO).
        pixel_decoder (dict): extra :class:`KMaXPixelDecoder` arguments
            (``num_blocks``, ``base_channels``, ``block_types``, ...).
        transformer_decoder (dict): extra :class:`KMaXTransformerDecoder`
            arguments (``num_layers``, ``num_queries``, ...).
        aux_semantic (bool): build the auxiliary semantic head (official:
            when ``AUX_SEMANTIC_WEIGHT > 0``). Defaults to True.
        norm_cfg (dict, optional): norm of both decoders (e.g.
            ``dict(type='SyncBN', eps=1e-3, momentum=0.01)``); None keeps
            their BN default.

    ``forward(feats)`` returns the official output dict (see
    :meth:`KMaXTransformerDecoder.forward`); ``aux_semantic_pred`` only in
    training, from the backbone features at strides 32, 8 and 4.
    """

    def __init__(self,
                 in_channels: Sequence[int] = (256, 512, 1024, 2048),
                 num_classes: int = 133,
                 pixel_decoder: Optional[dict] = None,
                 transformer_decoder: Optional[dict] = None,
                 aux_semantic: bool = True,
                 norm_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        if len(in_channels) < 4:
            raise ValueError(
                'kmax_deeplab_head.py: KMaXDeepLabHead needs at least 4 '
                'backbone levels (strides 4 to 32, the aux semantic head '
                f'reads strides 32, 8 and 4); got in_channels {in_channels}')
        norm = {} if norm_cfg is None else dict(norm_cfg=norm_cfg)
        self.pixel_decoder = KMaXPixelDecoder(in_channels,
                                              **(pixel_decoder or {}), **norm)
        decoder_cfg = dict(transformer_decoder or {})
        num_stages = len(decoder_cfg.get('num_layers', (2, 2, 2)))
        out_channels = self.pixel_decoder.out_channels
        self.num_stages = num_stages
        self.transformer_decoder = KMaXTransformerDecoder(
            in_channels=out_channels[:num_stages] + out_channels[-1:],
            num_classes=num_classes,
            aux_semantic_channels=(in_channels[-1], in_channels[-3],
                                   in_channels[-4]) if aux_semantic else None,
            **decoder_cfg,
            **norm)

    def forward(self, feats: Sequence[Tensor]) -> Dict:
        """``feats``: backbone levels, finest first."""
        outs = self.pixel_decoder(feats)
        return self.transformer_decoder(
            outs[:self.num_stages], outs[-1],
            (feats[-1], feats[-3], feats[-4]))
