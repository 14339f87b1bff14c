
from .dino import AnyWidthDINO  # noqa: F401
from .relation_detr import RelationDETR, RelationDINO  # noqa: F401
