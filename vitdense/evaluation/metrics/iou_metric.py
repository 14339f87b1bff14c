"""mmseg's IoU metric, warning when no pixel could be scored."""
import warnings
from typing import Dict

from mmseg.evaluation import IoUMetric

from vitdense.registry import METRICS

__all__ = ['ValidatedIoUMetric']


@METRICS.register_module()
class ValidatedIoUMetric(IoUMetric):
    """:class:`mmseg.evaluation.IoUMetric` that warns when the evaluated label
    maps hold no pixel of any class (all ``ignore_index``, e.g. a wrong
    ``reduce_zero_label``): mmseg then reports NaN for every metric without
    a word. The metric values are mmseg's, unchanged.
    """

    def compute_metrics(self, results: list) -> Dict[str, float]:
        if not self.format_only and results and \
                sum(float(area_label.sum())
                    for *_, area_label in results) == 0:
            warnings.warn(
                f'{type(self).__name__}: the {len(results)} evaluated label '
                'maps have no pixel of any class (every pixel is '
                f'ignore_index {self.ignore_index} or outside the classes), '
                'so every metric is NaN. '
                'Check the label PNGs and reduce_zero_label.')
        return super().compute_metrics(results)
