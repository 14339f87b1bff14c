"""mmdet's COCO metric, refusing an annotation file COCOeval mis-scores, with
faster-coco-eval as its COCO backend when installed."""
import functools
import types
from typing import Callable, Dict, Optional

import mmdet.evaluation.metrics.coco_metric as mmdet_coco_metric
from mmdet.evaluation import CocoMetric

from vitdense.datasets.coco import check_coco_annotations
from vitdense.registry import METRICS

__all__ = ['ValidatedCocoMetric', 'COCO_BACKENDS', 'resolve_coco_backend']

#: ``backend`` values of :class:`ValidatedCocoMetric`.
COCO_BACKENDS = ('auto', 'faster_coco_eval', 'pycocotools')


def _faster_coco_eval():
    """The faster_coco_eval module, or None when it is not installed."""
    try:
        import faster_coco_eval
    except ImportError:
        return None
    return faster_coco_eval


def resolve_coco_backend(backend: str) -> str:
    """``'faster_coco_eval'`` or ``'pycocotools'`` for ``backend``: ``'auto'``
    is faster-coco-eval when it is installed, else pycocotools; asking for
    faster-coco-eval without it installed is an ``ImportError``."""
    if backend not in COCO_BACKENDS:
        raise ValueError(f'COCO backend {backend!r} is not one of '
                         f'{COCO_BACKENDS}')
    if backend == 'pycocotools':
        return backend
    if _faster_coco_eval() is not None:
        return 'faster_coco_eval'
    if backend == 'auto':
        return 'pycocotools'
    raise ImportError(
        "backend='faster_coco_eval' needs the faster-coco-eval package: "
        "pip install 'faster-coco-eval>=1.8,<2' (or use backend="
        "'pycocotools' or 'auto')")


@functools.lru_cache(maxsize=None)
def _faster_compute_metrics() -> Callable:
    """mmdet's ``CocoMetric.compute_metrics`` with faster-coco-eval's
    ``COCO`` and ``COCOeval_faster`` in place of pycocotools': the same code
    object over a copy of its module's globals, so nothing is patched."""
    faster_coco_eval = _faster_coco_eval()

    class FasterCOCOeval(faster_coco_eval.COCOeval_faster):
        """Takes mmdet's three arguments and prints the summary to stdout,
        as pycocotools does (faster-coco-eval logs it by default)."""

        def __init__(self, coco_gt, coco_dt, iou_type):
            super().__init__(coco_gt, coco_dt, iou_type, print_function=print)

    compute = CocoMetric.compute_metrics
    api = dict(COCO=faster_coco_eval.COCO, COCOeval=FasterCOCOeval,
               COCOevalMP=FasterCOCOeval)
    return types.FunctionType(compute.__code__,
                              {**vars(mmdet_coco_metric), **api},
                              compute.__name__, compute.__defaults__,
                              compute.__closure__)


@METRICS.register_module()
class ValidatedCocoMetric(CocoMetric):
    """:class:`mmdet.evaluation.CocoMetric` that checks ``ann_file`` with
    :func:`~vitdense.datasets.coco.check_coco_annotations` when it is built,
    and evaluates with faster-coco-eval when it is installed.

    ``COCOeval`` reads a ground-truth box with NaN coordinates (NaN IoUs)
    and annotations of unknown images or categories without a word. Without
    ``ann_file`` the ground truth comes from the (validated) dataset and
    nothing is read.

    Backends: mmdet's code (:meth:`compute_metrics`: result files, keys,
    classwise table) runs unchanged; only the ``COCO``/``COCOeval`` classes
    it calls differ. With faster-coco-eval (``COCOeval_faster``: matching
    and accumulation in C++, the numbers of pycocotools,
    ``tests/test_evaluation/test_metrics/test_coco_backend.py``) mmdet's
    ``compute_metrics`` runs as a copy of the function whose globals name
    faster-coco-eval's classes, so nothing of mmdet or pycocotools is patched
    and other metrics keep pycocotools; ``use_mp_eval`` then also uses
    ``COCOeval_faster`` (it runs its own threads).

    Args:
        ann_file (str, optional): as :class:`~mmdet.evaluation.CocoMetric`.
        backend (str): ``'auto'`` (faster-coco-eval when installed, else
            pycocotools), ``'faster_coco_eval'`` (``ImportError`` when it is
            not installed) or ``'pycocotools'`` (mmdet's own path).
        **kwargs: as :class:`~mmdet.evaluation.CocoMetric`.
    """

    def __init__(self,
                 ann_file: Optional[str] = None,
                 backend: str = 'auto',
                 **kwargs) -> None:
        self.backend = resolve_coco_backend(backend)
        super().__init__(ann_file=ann_file, **kwargs)
        if self._coco_api is not None:
            check_coco_annotations(ann_file, self._coco_api.dataset)
        if self.backend == 'faster_coco_eval' and self._coco_api is not None:
            # mmdet's COCO read the file (and sorted the categories)
            self._coco_api = _faster_coco_eval().COCO(self._coco_api.dataset)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """As :meth:`mmdet.evaluation.CocoMetric.compute_metrics`, with the
        backend's ``COCO`` and ``COCOeval``."""
        if self.backend == 'pycocotools':
            return super().compute_metrics(results)
        return _faster_compute_metrics()(self, results)
