"""Top-k classification accuracy (ImageNet top-1/top-5).

The same numbers as mmpretrain's ``Accuracy`` metric (a sample counts for
top-k when its ground-truth class is among the k highest scores; torch's
``topk`` breaks ties), written here because mmpretrain cannot be imported
(it imports torchvision).
"""
from typing import Dict, List, Sequence, Union

import torch
from mmengine.evaluator import BaseMetric

from vitdense.registry import METRICS

__all__ = ['ClassificationAccuracy']


@METRICS.register_module()
class ClassificationAccuracy(BaseMetric):
    """Top-k accuracy in percent, reported as ``{prefix}/top{k}``.

    Reads ``pred_score`` (num_classes,) and ``gt_label`` (one class index)
    of every data sample. A ``k`` above the number of classes counts as the
    number of classes (100%), under its own key, so a config with
    ``topk=(1, 5)`` reports ``top5`` on a 3-class set too.

    Args:
        topk (int | Sequence[int]): the k values. Defaults to (1, 5).
        prefix (str): key prefix. Defaults to 'accuracy'.
        collect_device (str): 'cpu' or 'gpu' for distributed collection.
    """
    default_prefix = 'accuracy'

    def __init__(self,
                 topk: Union[int, Sequence[int]] = (1, 5),
                 prefix: str = 'accuracy',
                 collect_device: str = 'cpu'):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = (topk, ) if isinstance(topk, int) else tuple(topk)
        if not self.topk or not all(
                isinstance(k, int) and k > 0 for k in self.topk):
            raise ValueError(f'{type(self).__name__}: topk must be positive '
                             f'integers, got {topk!r}')

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            for key in ('pred_score', 'gt_label'):
                if sample.get(key) is None:
                    raise KeyError(
                        f'{type(self).__name__}: a data sample '
                        f'({sample.get("img_path", "no img_path")}) has no '
                        f'{key!r}; the model must set pred_score (num_classes,'
                        ' scores) and the pipeline gt_label (PackClsInputs)')
            score = torch.as_tensor(sample['pred_score']).detach().cpu()
            label = torch.as_tensor(sample['gt_label']).reshape(-1)
            if score.ndim != 1 or label.numel() != 1:
                raise ValueError(
                    f'{type(self).__name__}: pred_score must be 1-D and '
                    f'gt_label one index, got shapes {tuple(score.shape)} '
                    f'and {tuple(label.shape)}')
            self.results.append((score.float(), int(label)))

    def compute_metrics(self, results: List[tuple]) -> Dict[str, float]:
        name = type(self).__name__
        if not results:
            raise ValueError(f'{name}: no samples were evaluated')
        num_classes = {len(score) for score, _ in results}
        if len(num_classes) != 1:
            raise ValueError(f'{name}: pred_score lengths differ between '
                             f'samples: {sorted(num_classes)}')
        num_classes = num_classes.pop()
        scores = torch.stack([score for score, _ in results])
        labels = torch.tensor([label for _, label in results])
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f'{name}: gt_label outside 0..{num_classes - 1}')
        ranked = scores.topk(min(max(self.topk), num_classes), dim=1).indices
        hits = ranked == labels[:, None]  # (N, max k)
        return {f'top{k}': hits[:, :min(k, num_classes)].any(1).float()
                .mean().item() * 100 for k in self.topk}
