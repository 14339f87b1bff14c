"""mmdet's COCO metric, refusing an annotation file COCOeval mis-scores."""
from typing import Optional

from mmdet.evaluation import CocoMetric

from vitdense.datasets.coco import check_coco_annotations
from vitdense.registry import METRICS

__all__ = ['ValidatedCocoMetric']


@METRICS.register_module()
class ValidatedCocoMetric(CocoMetric):
    """:class:`mmdet.evaluation.CocoMetric` that checks ``ann_file`` with
    :func:`~vitdense.datasets.coco.check_coco_annotations` when it is built.

    ``COCOeval`` reads a ground-truth box with NaN coordinates (NaN IoUs)
    and annotations of unknown images or categories without a word. Without
    ``ann_file`` the ground truth comes from the (validated) dataset and
    nothing is read.

    Args:
        ann_file (str, optional): as :class:`~mmdet.evaluation.CocoMetric`.
        **kwargs: as :class:`~mmdet.evaluation.CocoMetric`.
    """

    def __init__(self, ann_file: Optional[str] = None, **kwargs) -> None:
        super().__init__(ann_file=ann_file, **kwargs)
        if self._coco_api is not None:
            check_coco_annotations(ann_file, self._coco_api.dataset)
