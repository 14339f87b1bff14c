"""kMaX-DeepLab inference: panoptic map, semantic probabilities and
instances against the official code (odd and even padded widths), mmdet's
panoptic encoding and the data-sample fields the metrics read.

Fixture ``tests/data/kmax_loss/kmax_official.pth`` comes from
bytedance/kmax-deeplab@f8e1d04 (see the README there).
"""
import os.path as osp

import pytest
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.structures import DetDataSample

from vitdense.models import KMaXFusionHead, kmax_panoptic_inference
from vitdense.registry import MODELS

FIXTURE = osp.join(osp.dirname(osp.dirname(osp.dirname(__file__))), 'data',
                   'kmax_loss', 'kmax_official.pth')
NUM_CLASSES = 5  # 3 things + 2 stuff


@pytest.fixture(scope='module')
def official():
    return torch.load(FIXTURE, weights_only=False)


def mmdet_encoding(segment_map, segments_info):
    """Official (segment ids, segments_info) -> mmdet's panoptic values:
    things ``label + k * INSTANCE_OFFSET`` (k-th thing by segment id, from
    1), stuff ``label``, void the number of classes."""
    panoptic = torch.full_like(segment_map, NUM_CLASSES)
    instance_id = 0
    for segment in sorted(segments_info, key=lambda s: s['id']):
        value = segment['category_id']
        if segment['isthing']:
            instance_id += 1
            value += instance_id * INSTANCE_OFFSET
        panoptic[segment_map == segment['id']] = value
    return panoptic


def samples_for(case: dict):
    return [
        DetDataSample(metainfo=dict(
            img_shape=img_shape, ori_shape=ori_shape,
            batch_input_shape=case['batch_input_shape']))
        for img_shape, ori_shape in zip(case['img_shapes'],
                                        case['ori_shapes'])
    ]


def all_on_head(topk: int = 100) -> KMaXFusionHead:
    return MODELS.build(
        dict(type='KMaXFusionHead', num_things_classes=3,
             num_stuff_classes=2,
             test_cfg=dict(semantic_on=True, instance_on=True,
                           max_per_image=topk)))


@pytest.mark.parametrize('case_name', ['inference_odd', 'inference_even'])
def test_kmax_inference_equals_official(official, case_name):
    case = official[case_name]
    results = all_on_head(case['topk']).predict(
        case['pred_logits'].float(), case['pred_masks'].float(),
        samples_for(case))
    for result, expected, ori_shape in zip(results, case['results'],
                                           case['ori_shapes']):
        panoptic = result['pan_results'].sem_seg
        assert panoptic.shape == (1, ) + tuple(ori_shape)
        assert torch.equal(
            panoptic[0],
            mmdet_encoding(expected['panoptic_seg'],
                           expected['segments_info']))
        torch.testing.assert_close(result['seg_logits'].data,
                                   expected['sem_seg'], atol=1e-5, rtol=0)
        assert torch.equal(result['sem_results'].data[0],
                           expected['sem_seg'].argmax(0))
        # the official top-k is unsorted: compare by descending score
        instances = result['ins_results']
        mine = instances.scores.argsort(descending=True)
        theirs = expected['instance_scores'].argsort(descending=True)
        assert torch.equal(instances.labels[mine],
                           expected['instance_labels'][theirs])
        torch.testing.assert_close(instances.scores[mine],
                                   expected['instance_scores'][theirs],
                                   atol=1e-5, rtol=0)
        assert torch.equal(instances.masks[mine],
                           expected['instance_masks'][theirs])
        assert (instances.labels < 3).all()  # things only


def test_kmax_inference_fills_the_metric_fields(official):
    case = official['inference_odd']
    head = all_on_head()
    samples = samples_for(case)
    results = head.predict(case['pred_logits'].float(),
                           case['pred_masks'].float(), samples)
    head.add_pred_to_datasample(samples, results)
    sample, ori_shape = samples[1], tuple(case['ori_shapes'][1])
    panoptic = sample.pred_panoptic_seg.sem_seg[0]
    labels = panoptic % INSTANCE_OFFSET
    # void is the number of classes; stuff has instance id 0; thing ids
    # count from 1
    assert set(labels.unique().tolist()) <= set(range(NUM_CLASSES + 1))
    assert (panoptic[labels >= 3] < INSTANCE_OFFSET).all()
    thing_ids = (panoptic[labels < 3] // INSTANCE_OFFSET).unique()
    assert thing_ids.tolist() == list(range(1, len(thing_ids) + 1))
    assert sample.pred_sem_seg.data.shape == (1, ) + ori_shape
    assert sample.pred_sem_seg.data.dtype == torch.int64
    assert sample.seg_logits.data.shape == (NUM_CLASSES, ) + ori_shape
    instances = sample.pred_instances
    assert instances.masks.dtype == torch.bool
    assert instances.bboxes.shape == (len(instances), 4)
    first = instances.masks[0].nonzero()
    assert instances.bboxes[0].tolist() == [
        first[:, 1].min(), first[:, 0].min(), first[:, 1].max() + 1,
        first[:, 0].max() + 1
    ]


def test_kmax_inference_without_rescale_keeps_the_image_region(official):
    case = official['inference_even']
    results = KMaXFusionHead(3, 2).predict(case['pred_logits'].float(),
                                           case['pred_masks'].float(),
                                           samples_for(case), rescale=False)
    assert [tuple(r['pan_results'].sem_seg.shape[1:]) for r in results
            ] == [tuple(shape) for shape in case['img_shapes']]
    assert all(set(r) == {'pan_results'} for r in results)


def test_kmax_panoptic_stuff_label_zero_is_not_void():
    """Semantic-style classes (no things): stuff 0 keeps label 0, the
    second query of class 1 merges into its segment, void is 2."""
    mask_cls = torch.tensor([[9.0, 0.0, 0.0], [0.0, 9.0, 0.0],
                             [0.0, 9.0, 0.0], [0.0, 0.0, 9.0]])
    mask_pred = torch.full((4, 4, 6), -9.0)
    mask_pred[0, :, :2] = 9.0
    mask_pred[1, :, 2:4] = 9.0
    mask_pred[2, :2, 4:] = 9.0
    mask_pred[3, 2:, 4:] = 9.0  # confident void query: never a segment
    panoptic = kmax_panoptic_inference(mask_cls, mask_pred,
                                       num_things_classes=0)
    expected = torch.tensor([[0, 0, 1, 1, 1, 1]] * 2 +
                            [[0, 0, 1, 1, 2, 2]] * 2, dtype=torch.int32)
    assert torch.equal(panoptic, expected)


def test_kmax_fusion_head_checks_its_config_and_inputs():
    with pytest.raises(ValueError, match=r"unknown test_cfg keys "
                       r"\['object_mask_thr'\]"):
        KMaXFusionHead(3, 2, test_cfg=dict(object_mask_thr=0.8))
    head = KMaXFusionHead(3, 2)
    sample = DetDataSample(metainfo=dict(
        img_shape=(8, 8), ori_shape=(8, 8), batch_input_shape=(8, 8)))
    with pytest.raises(ValueError, match=r'pred_logits have 5 classes, '
                       r'expected .* = 6'):
        head.predict(torch.zeros(1, 4, 5), torch.zeros(1, 4, 2, 2),
                     [sample])
