from .accuracy import ClassificationAccuracy
from .coco_metric import ValidatedCocoMetric
from .iou_metric import ValidatedIoUMetric
from .kitti_metric import KittiMetric
from .panoptic_metric import VitdenseCocoPanopticMetric

__all__ = [
    'ClassificationAccuracy', 'ValidatedCocoMetric', 'ValidatedIoUMetric',
    'KittiMetric', 'VitdenseCocoPanopticMetric'
]
