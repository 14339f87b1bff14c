"""mmdet's DINO at any transformer width.

mmdet 3.3's ``DinoTransformerDecoder`` always encodes the 4-d reference box
with ``coordinate_to_encoding(num_feats=128)`` (512 channels) but sizes its
``ref_point_head`` input as ``2 * embed_dims``, so every width but 256
crashes. :class:`AnyWidthDINO` sizes that MLP for the 512 channels it gets;
at width 256 it is mmdet's DINO unchanged (same parameters, same keys).
"""
from mmdet.models.detectors import DINO
from mmdet.models.layers import MLP

from vitdense.registry import MODELS

__all__ = ['AnyWidthDINO']

#: Channels of mmdet's reference-box sine encoding: 4 coordinates x 128.
DINO_BOX_ENCODING_DIMS = 4 * 128


@MODELS.register_module()
class AnyWidthDINO(DINO):
    """:class:`mmdet.models.DINO` whose decoder works at any ``embed_dims``."""

    def _init_layers(self) -> None:
        super()._init_layers()
        self.decoder.ref_point_head = MLP(DINO_BOX_ENCODING_DIMS,
                                          self.embed_dims, self.embed_dims, 2)
