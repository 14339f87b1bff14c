"""MonoDINO-DETR criterion: targets, group-wise matching, every loss term
and its gradients against the official code; zero-object frames.

Fixture ``tests/data/monodino_detr_loss/monodino_detr_official.pth`` comes
from JihyeokKim/MonoDINO-DETR@65004cc (see the README there).
"""
import os.path as osp

import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from vitdense.models import (DDNDepthMapLoss, MonoDINODETRCriterion,
                             targets_from_data_samples)
from vitdense.registry import MODELS

FIXTURE = osp.join(osp.dirname(osp.dirname(osp.dirname(__file__))), 'data',
                   'monodino_detr_loss', 'monodino_detr_official.pth')
#: official ``SetCriterion`` key -> vitdense key (aux ``_i`` -> ``di.``)
OFFICIAL_NAMES = dict(loss_ce='loss_cls',
                      loss_bbox='loss_bbox',
                      loss_giou='loss_iou',
                      loss_center='loss_center',
                      loss_depth='loss_depth',
                      loss_dim='loss_dim',
                      loss_angle='loss_angle',
                      loss_depth_map='loss_depth_map')


@pytest.fixture(scope='module')
def official():
    return torch.load(FIXTURE, weights_only=False)


def data_sample(raw: dict) -> DetDataSample:
    """A data sample as PackMono3DInputs gives it (KITTI data contract)."""
    sample = DetDataSample(metainfo=dict(img_shape=raw['img_shape'],
                                         cam2img=raw['cam2img'],
                                         ori_cam2img=raw['ori_cam2img'],
                                         trans_mat=raw['trans_mat']))
    sample.gt_instances = InstanceData(bboxes=raw['bboxes'],
                                       labels=raw['labels'])
    sample.gt_instances_3d = InstanceData(bboxes_3d=raw['bboxes_3d'],
                                          labels_3d=raw['labels'],
                                          centers_2d=raw['centers_2d'],
                                          depths=raw['depths'])
    return sample


def vitdense_name(official_key: str) -> str:
    name, _, layer = official_key.rpartition('_')
    if layer.isdigit():
        return f'd{layer}.{OFFICIAL_NAMES[name]}'
    return OFFICIAL_NAMES[official_key]


def trainable(outputs: dict) -> dict:
    """Fresh leaf copies of an official outputs dict."""
    copy = {
        k: v.clone().requires_grad_(True)
        for k, v in outputs.items() if k != 'aux_outputs'
    }
    copy['aux_outputs'] = [{
        k: v.clone().requires_grad_(True)
        for k, v in aux.items()
    } for aux in outputs['aux_outputs']]
    return copy


def grad_of(outputs: dict, official_key: str) -> torch.Tensor:
    if official_key.startswith('aux'):
        layer, name = official_key[3:].split('.')
        return outputs['aux_outputs'][int(layer)][name].grad
    return outputs[official_key].grad


def criterion(training: bool) -> MonoDINODETRCriterion:
    """The official config's weights and costs, 3 classes, 3 groups."""
    return MonoDINODETRCriterion(num_classes=3, group_num=3).train(training)


@pytest.mark.parametrize('case', ['main', 'zero'])
def test_targets_match_official_dataset(official, case):
    targets = targets_from_data_samples(
        [data_sample(raw) for raw in official[case]['samples']])
    for mine, theirs in zip(targets, official[case]['targets']):
        assert set(mine) == set(theirs)
        for key, value in theirs.items():
            assert mine[key].shape == value.shape, key
            torch.testing.assert_close(mine[key].double(),
                                       value.double(),
                                       rtol=0,
                                       atol=1e-5,
                                       msg=key)


@pytest.mark.parametrize('mode', ['train', 'eval'])
@pytest.mark.parametrize('case', ['main', 'zero'])
def test_every_loss_term_matches_official(official, case, mode):
    entry = official[case]
    outputs = trainable(entry['outputs'])
    losses = criterion(mode == 'train')(
        outputs, [data_sample(raw) for raw in entry['samples']])
    expected = {vitdense_name(k): v for k, v in entry[mode]['losses'].items()}
    assert set(losses) == set(expected)
    assert 'd1.loss_cls' in losses and 'd0.loss_depth_map' not in losses
    for key, value in expected.items():
        torch.testing.assert_close(losses[key].detach(),
                                   value,
                                   rtol=0,
                                   atol=1e-4,
                                   msg=key)


@pytest.mark.parametrize('mode', ['train', 'eval'])
@pytest.mark.parametrize('case', ['main', 'zero'])
def test_gradients_match_official(official, case, mode):
    entry = official[case]
    outputs = trainable(entry['outputs'])
    losses = criterion(mode == 'train')(
        outputs, [data_sample(raw) for raw in entry['samples']])
    sum(losses.values()).backward()
    for key, value in entry[mode]['grads'].items():
        torch.testing.assert_close(grad_of(outputs, key),
                                   value,
                                   rtol=0,
                                   atol=1e-5,
                                   msg=key)


@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_group_wise_matching_matches_official(official, mode):
    entry = official['main']
    targets = targets_from_data_samples(
        [data_sample(raw) for raw in entry['samples']])
    layers = [entry['outputs']] + entry['outputs']['aux_outputs']
    group_num = 3 if mode == 'train' else 1
    for layer, expected in zip(layers, entry[mode]['indices']):
        indices = criterion(True).matcher(layer, targets, group_num)
        for (queries, gts), (their_queries,
                             their_gts) in zip(indices, expected):
            assert torch.equal(queries, their_queries)
            assert torch.equal(gts, their_gts)
    # train: each of the 3 groups of 10 queries matches every ground truth
    queries, gts = criterion(True).matcher(entry['outputs'], targets, 3)[1]
    assert len(gts) == 3 * len(targets[1]['labels'])
    assert [int((queries // 10 == g).sum()) for g in range(3)] == [4, 4, 4]


def test_zero_object_batch_gives_finite_losses_and_gradients(official):
    entry = official['zero']
    empty = data_sample(entry['samples'][1])
    assert len(empty.gt_instances_3d.bboxes_3d) == 0
    outputs = trainable(entry['outputs'])
    losses = criterion(True)(outputs, [empty, empty])
    assert all(torch.isfinite(v) for v in losses.values())
    # nothing matched: only the class (all negatives) and depth-map terms
    assert losses['loss_cls'] > 0 and losses['loss_depth_map'] > 0
    assert losses['loss_bbox'] == losses['loss_depth'] == losses[
        'loss_dim'] == 0
    sum(losses.values()).backward()
    assert torch.isfinite(outputs['pred_logits'].grad).all()
    assert outputs['pred_logits'].grad.abs().sum() > 0
    assert torch.isfinite(outputs['pred_depth_map_logits'].grad).all()
    assert outputs['pred_boxes'].grad.abs().sum() == 0


def test_depth_map_box_crossing_the_border_is_clipped_to_it():
    """The official slicing wraps a negative start and paints nothing;
    vitdense paints the part inside the map."""
    loss = DDNDepthMapLoss()
    logits = torch.zeros(1, 81, 4, 6, requires_grad=True)
    box = torch.tensor([[-1.5, 1.2, 2.5, 5.0]])  # cells x 0..2, y 1..3
    depth = torch.tensor([30.0])
    value = loss(logits, [box], [depth])
    value.backward()
    bin_index = loss.lid_bins(depth, 80).item()
    # uniform logits: the focal loss is the same everywhere, so the
    # gradient of the target bin shows where the depth was painted
    target_grad = logits.grad[0, bin_index]
    painted = target_grad < 0
    assert painted.tolist() == [[False] * 6] + [[True] * 3 + [False] * 3] * 3
    # foreground weighted 13x the background
    weights = logits.grad[0].abs().sum(0)
    torch.testing.assert_close(weights[1, 0] / weights[0, 0],
                               torch.tensor(13.0))


def test_lid_bins_follow_the_official_discretisation():
    loss = DDNDepthMapLoss()
    depth = torch.tensor([0.0, 1e-3, 0.5, 30.0, 59.99, 60.5, float('inf')])
    bins = loss.lid_bins(depth, 80)
    # bin_size = 2 (60 - 1e-3) / (80 * 81); index = -0.5 + 0.5 sqrt(1 + 8 (d -
    # 1e-3) / bin_size), background / out of range -> 80
    assert bins.tolist() == [80, 0, 6, 56, 79, 80, 80]


def test_criterion_builds_from_config_and_checks_its_arguments():
    built = MODELS.build(
        dict(type='MonoDINODETRCriterion',
             num_classes=1,
             group_num=11,
             loss_weights=dict(depth_map=0.5)))
    assert built.loss_weights == dict(cls=2.0,
                                      bbox=5.0,
                                      iou=2.0,
                                      center=10.0,
                                      dim=1.0,
                                      angle=1.0,
                                      depth=1.0,
                                      depth_map=0.5)
    assert built.loss_cls.loss_weight == 2.0 and built.test_cfg['topk'] == 50
    with pytest.raises(ValueError, match=r"unknown loss_weights \['giou'\]"):
        MonoDINODETRCriterion(num_classes=1, loss_weights=dict(giou=2))
    outputs = dict(pred_logits=torch.zeros(1, 10, 1),
                   pred_boxes=torch.full((1, 10, 6), 0.3))
    with pytest.raises(ValueError, match='10 queries do not split into 3'):
        built.matcher(
            outputs, [dict(labels=torch.zeros(0), boxes_3d=torch.zeros(0, 6))],
            3)
    with pytest.raises(ValueError, match='pred_logits has 3 classes'):
        built.loss_by_targets(dict(pred_logits=torch.zeros(1, 11, 3)), [])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_criterion_runs_on_cuda_with_official_values(official):
    entry = official['main']
    outputs = trainable(entry['outputs'])
    cuda_outputs = {
        k: v.detach().cuda().requires_grad_(True)
        for k, v in outputs.items() if k != 'aux_outputs'
    }
    cuda_outputs['aux_outputs'] = [{
        k: v.detach().cuda().requires_grad_(True)
        for k, v in aux.items()
    } for aux in outputs['aux_outputs']]
    samples = [data_sample(raw).to('cuda') for raw in entry['samples']]
    losses = criterion(True)(cuda_outputs, samples)
    sum(losses.values()).backward()
    for key, value in entry['train']['losses'].items():
        torch.testing.assert_close(losses[vitdense_name(key)].detach().cpu(),
                                   value, rtol=0, atol=1e-4, msg=key)
    torch.testing.assert_close(cuda_outputs['pred_boxes'].grad.cpu(),
                               entry['train']['grads']['pred_boxes'], rtol=0,
                               atol=1e-5)
