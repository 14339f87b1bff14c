from .kmax_postprocess import (  # noqa: F401
    KMaXFusionHead, kmax_instance_inference, kmax_panoptic_inference,
    kmax_semantic_inference)
from .kmax_deeplab_head import KMaXDeepLabHead  # noqa: F401
from .monodino_detr_coder import (  # noqa: F401
    decode_predictions, targets_from_data_samples)
from .relation_detr_head import RelationDETRHead  # noqa: F401
from .vidt_head import ViDTHead  # noqa: F401
