from .swin import SwinTransformer  # noqa: F401
from .vit_comer import ViTCoMer  # noqa: F401
