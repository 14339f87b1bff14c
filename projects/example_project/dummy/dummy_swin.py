"""A third-party backbone added without touching ``vitdense/``."""
from mmdet.models.backbones import SwinTransformer

from vitdense.registry import MODELS


@MODELS.register_module()
class DummySwin(SwinTransformer):
    """mmdet's Swin that also records the shape of its last input."""

    def forward(self, x):
        self.last_input_shape = tuple(x.shape)
        return super().forward(x)
