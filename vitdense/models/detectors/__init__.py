
from .dino import AnyWidthDINO  # noqa: F401
from .kmax_deeplab import KMaXDeepLab  # noqa: F401
from .monodino_detr import MonoDINODETR  # noqa: F401
from .monodetr import MonoDETR  # noqa: F401
from .relation_detr import RelationDETR, RelationDINO  # noqa: F401
from .vidt import ViDT  # noqa: F401
from .uni_perceiver_v2 import UniPerceiverV2  # noqa: F401
