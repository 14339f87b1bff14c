
from .dct_mask import DCTMaskCoder  # noqa: F401
from .kmax_layers import (  # noqa: F401
    KMaXAuxSemanticHead, KMaXPixelDecoder, KMaXPredictor,
    KMaXTransformerDecoder, KMaXTransformerLayer)
from .mlp import Mlp  # noqa: F401
from .monodino_detr_layers import (  # noqa: F401
    DepthAwareDecoder, DepthAwareDecoderLayer, DepthPredictor,
    HierarchicalFeatureFusion, MonoDETRDepthPredictor)
from .relation_detr_layers import (  # noqa: F401
    RelationDetrTransformerDecoder, RelationDetrTransformerEncoder)
from .uni_perceiver_layers import (  # noqa: F401
    AttentionPoolingHeads, ConditionalMoEFFN, RegionTokenEmbed,
    RobertaTextEncoder, UnifiedDecoder, UnifiedDecoderLayer,
    UnifiedSimilarityLoss, unified_logits, unified_loss)
from .vidt_plus_layers import TokenLabelHead  # noqa: F401
