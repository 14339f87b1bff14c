"""mmdet's DINO at any transformer width, on vitdense's deformable attention.

mmdet 3.3's ``DinoTransformerDecoder`` always encodes the 4-d reference box
with ``coordinate_to_encoding(num_feats=128)`` (512 channels) but sizes its
``ref_point_head`` input as ``2 * embed_dims``, so every width but 256
crashes. :class:`AnyWidthDINO` sizes that MLP for the 512 channels it gets;
at width 256 it is mmdet's DINO unchanged (same parameters, same keys).
"""
from mmdet.models.detectors import DINO
from mmdet.models.layers import MLP

from vitdense.ops import MultiScaleDeformableAttention, convert_mmcv_msda
from vitdense.registry import MODELS

__all__ = ['AnyWidthDINO', 'VitdenseMSDAMixin']

#: Channels of mmdet's reference-box sine encoding: 4 coordinates x 128.
DINO_BOX_ENCODING_DIMS = 4 * 128


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
    on vitdense's deformable attention."""

    def _init_layers(self) -> None:
        super()._init_layers()
        self.decoder.ref_point_head = MLP(DINO_BOX_ENCODING_DIMS,
                                          self.embed_dims, self.embed_dims, 2)
