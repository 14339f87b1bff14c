
from .mlp import Mlp  # noqa: F401
from .relation_detr_layers import (  # noqa: F401
    RelationDetrTransformerDecoder, RelationDetrTransformerEncoder)
