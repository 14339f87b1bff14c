"""mmdet's DINO at any transformer width, on vitdense's deformable attention.

mmdet 3.3's ``DinoTransformerDecoder`` encodes the 4-d reference box with
``coordinate_to_encoding(num_feats=128)`` (512 channels) at every width but
sizes its ``ref_point_head`` input as ``2 * embed_dims``, so every width but
256 crashes. The official DINO and Relation-DETR decoders
(https://github.com/xiuqhou/Relation-DETR, ``models/bricks/
dino_transformer.py`` and ``relation_transformer.py``) encode each box
coordinate with ``embed_dims // 2`` sine features
(``get_sine_pos_embed(reference_points, embed_dim // 2)``, 128 at width 256)
into that ``2 * embed_dims`` MLP. :class:`AnyWidthDINO` does the same through
``RelationDetrTransformerDecoder``, the one decoder of DINO, "DINO +
relation" and Relation-DETR here; at width 256 it is mmdet's DINO unchanged
(same parameters, same keys, same outputs).
"""
import torch
from mmdet.models.detectors import DINO
from mmdet.models.layers import (DeformableDetrTransformerEncoder,
                                 SinePositionalEncoding)
from torch import nn

from vitdense.models.layers.relation_detr_layers import \
    RelationDetrTransformerDecoder
from vitdense.ops import MultiScaleDeformableAttention, convert_mmcv_msda
from vitdense.registry import MODELS

__all__ = ['AnyWidthDINO', 'VitdenseMSDAMixin']


class VitdenseMSDAMixin:
    """Runs a mmdet Deformable-DETR family detector on vitdense's
    multi-scale deformable attention.

    mmdet's DETR layers construct ``mmcv.ops.MultiScaleDeformableAttention``
    directly, whose CPU path is a ``grid_sample`` loop (about 6-10x slower
    than vitdense's kernel, docs/benchmarks.md). The swap keeps parameter
    names, so mmdet checkpoints load unchanged. mmdet's ``init_weights``
    only re-initialises mmcv's class, so ours are re-initialised here.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        convert_mmcv_msda(self)

    def init_weights(self) -> None:
        super().init_weights()
        for module in self.modules():
            if isinstance(module, MultiScaleDeformableAttention):
                module.init_weights()


@MODELS.register_module()
class AnyWidthDINO(VitdenseMSDAMixin, DINO):
    """:class:`mmdet.models.DINO` whose decoder works at any ``embed_dims``,
    on vitdense's deformable attention.

    ``decoder`` takes the arguments of
    :class:`~vitdense.models.layers.RelationDetrTransformerDecoder`;
    ``relation`` and ``query_scale`` default to False here, which is mmdet's
    DINO decoder with the reference-box encoding at ``embed_dims // 2``
    features per coordinate.
    """

    def __init__(self, *args, decoder: dict, **kwargs) -> None:
        decoder = {'relation': False, 'query_scale': False, **decoder}
        super().__init__(*args, decoder=decoder, **kwargs)

    def _build_encoder(self, cfg: dict) -> nn.Module:
        return DeformableDetrTransformerEncoder(**cfg)

    def _init_layers(self) -> None:
        """mmdet's ``DINO._init_layers`` with the decoder (and, in
        subclasses, the encoder) replaced."""
        self.positional_encoding = SinePositionalEncoding(
            **self.positional_encoding)
        self.encoder = self._build_encoder(self.encoder)
        self.decoder = RelationDetrTransformerDecoder(**self.decoder)
        self.embed_dims = self.encoder.embed_dims
        self.query_embedding = nn.Embedding(self.num_queries, self.embed_dims)
        num_feats = self.positional_encoding.num_feats
        assert num_feats * 2 == self.embed_dims, \
            f'embed_dims ({self.embed_dims}) must be 2 * num_feats ' \
            f'({num_feats})'
        self.level_embed = nn.Parameter(
            torch.Tensor(self.num_feature_levels, self.embed_dims))
        self.memory_trans_fc = nn.Linear(self.embed_dims, self.embed_dims)
        self.memory_trans_norm = nn.LayerNorm(self.embed_dims)

    def init_weights(self) -> None:
        super().init_weights()
        if self.decoder.with_relation:
            # PyTorch's default conv init, as the official module (DINO's
            # init_weights would xavier-init it with the decoder)
            self.decoder.position_relation_embedding.pos_proj[
                0].reset_parameters()
