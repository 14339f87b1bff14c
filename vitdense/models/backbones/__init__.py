from .crossformer import CrossFormer  # noqa: F401
from .dinov2_dpt import DepthAnythingV2  # noqa: F401
from .rmt import RMT  # noqa: F401
from .swin import SwinTransformer  # noqa: F401
from .swin_ram import SwinRAM  # noqa: F401
from .vit_comer import ViTCoMer  # noqa: F401
