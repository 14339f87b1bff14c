from .relation_detr_head import RelationDETRHead  # noqa: F401
