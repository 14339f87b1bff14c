from .coco_metric import ValidatedCocoMetric
from .iou_metric import ValidatedIoUMetric

__all__ = ['ValidatedCocoMetric', 'ValidatedIoUMetric']
