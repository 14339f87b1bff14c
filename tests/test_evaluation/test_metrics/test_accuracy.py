"""ClassificationAccuracy: top-k in percent on hand-made scores."""
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.evaluator import Evaluator

from vitdense.evaluation.metrics import ClassificationAccuracy
from vitdense.registry import METRICS

# Four samples, six classes; the true class ranks 1st, 2nd, 5th and 6th.
SCORES = torch.tensor([[0.1, 0.5, 0.1, 0.1, 0.1, 0.1],
                       [0.4, 0.3, 0.1, 0.1, 0.05, 0.05],
                       [0.3, 0.25, 0.2, 0.15, 0.07, 0.03],
                       [0.3, 0.25, 0.2, 0.15, 0.07, 0.03]])
LABELS = (1, 1, 4, 5)


def _samples(scores, labels):
    return [{'pred_score': score, 'gt_label': torch.tensor([label])}
            for score, label in zip(scores, labels)]


def _evaluate(metric, samples):
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def test_accuracy_top1_top5_exact_values():
    result = _evaluate(ClassificationAccuracy(topk=(1, 2, 5)),
                       _samples(SCORES, LABELS))
    assert result == {'accuracy/top1': 25.0, 'accuracy/top2': 50.0,
                      'accuracy/top5': 75.0}


def test_accuracy_clips_k_to_the_number_of_classes_and_keeps_the_key():
    scores = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    result = _evaluate(ClassificationAccuracy(), _samples(scores, (0, 0)))
    assert result == {'accuracy/top1': 50.0, 'accuracy/top5': 100.0}


def test_accuracy_through_evaluator_with_det_data_samples():
    samples = []
    for score, label in zip(SCORES, LABELS):
        sample = DetDataSample(metainfo=dict(task='classification'))
        sample.gt_label = torch.tensor([label])
        sample.pred_score = score
        samples.append(sample)
    evaluator = Evaluator(METRICS.build(
        dict(type='ClassificationAccuracy', topk=(1, 5), prefix='cls')))
    evaluator.process(samples)
    assert evaluator.evaluate(len(samples)) == {'cls/top1': 25.0,
                                                'cls/top5': 75.0}


def test_accuracy_names_a_missing_pred_score():
    metric = ClassificationAccuracy()
    with pytest.raises(KeyError, match=r"\(a.jpg\) has no 'pred_score'"):
        metric.process({}, [{'gt_label': torch.tensor([0]),
                             'img_path': 'a.jpg'}])


def test_accuracy_rejects_bad_topk_and_mismatched_scores():
    with pytest.raises(ValueError, match='topk must be positive'):
        ClassificationAccuracy(topk=(0, 5))
    metric = ClassificationAccuracy()
    metric.process({}, _samples([torch.rand(3), torch.rand(4)], (0, 1)))
    with pytest.raises(ValueError, match='lengths differ'):
        metric.evaluate(2)
