"""kMaX-DeepLab criterion: targets, matching, sampled pixels, every loss
term and its gradients against the official code; zero-segment and
stuff-only images.

Fixture ``tests/data/kmax_loss/kmax_official.pth`` comes from
bytedance/kmax-deeplab@f8e1d04 (see the README there).
"""
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData, PixelData
from mmseg.structures import SegDataSample

from vitdense.models import KMaXCriterion, pq_matching
from vitdense.models.losses import kmax_loss
from vitdense.models.losses.kmax_loss import targets_from_data_samples
from vitdense.registry import MODELS

FIXTURE = osp.join(osp.dirname(osp.dirname(osp.dirname(__file__))), 'data',
                   'kmax_loss', 'kmax_official.pth')
#: official ``SetCriterion`` key -> vitdense key (aux ``_i`` -> ``di.``)
OFFICIAL_NAMES = dict(loss_ce='loss_cls',
                      loss_mask='loss_mask',
                      loss_dice='loss_dice',
                      loss_pixel_insdis='loss_insdis',
                      loss_aux_semantic='loss_aux_semantic')
OUTPUT_KEYS = ('pred_logits', 'pred_masks', 'pixel_feature')


@pytest.fixture(scope='module')
def official():
    return torch.load(FIXTURE, weights_only=False)


def vitdense_name(official_key: str) -> str:
    name, _, layer = official_key.rpartition('_')
    if layer.isdigit():
        return f'd{layer}.{OFFICIAL_NAMES[name]}'
    return OFFICIAL_NAMES[official_key]


def trainable(outputs: dict) -> dict:
    """Fresh float32 leaf copies of a (float16) outputs dict."""
    return {
        key: ([trainable(aux) for aux in value] if key == 'aux_outputs' else
              value.float().requires_grad_(True))
        for key, value in outputs.items()
    }


def criterion_for(official, **kwargs) -> KMaXCriterion:
    return KMaXCriterion(
        official['num_things'], official['num_stuff'],
        seed=official['sample_seed'],
        insdis_sample_k=official['insdis_sample_k'],
        aux_semantic_sample_k=official['aux_semantic_sample_k'], **kwargs)


def panoptic_sample(mapper: dict) -> DetDataSample:
    """The mapper case as mmdet's panoptic loading + PackDetInputs give it:
    non-crowd things as ``gt_instances``, ``gt_sem_seg`` with every segment
    (crowd included) painted with its class and 255 elsewhere."""
    pan = mapper['pan'].numpy()
    sem = np.full(pan.shape, 255, dtype=np.int64)
    labels, masks = [], []
    for segment in mapper['segments']:
        mask = pan == segment['id']
        sem[mask] = segment['category_id']
        if segment['isthing'] and not segment['iscrowd']:
            labels.append(segment['category_id'])
            masks.append(mask.astype(np.uint8))
    sample = DetDataSample(metainfo=dict(
        img_shape=pan.shape, batch_input_shape=mapper['batch_input_shape']))
    sample.gt_instances = InstanceData(
        labels=torch.tensor(labels),
        masks=BitmapMasks(masks, *pan.shape))
    sample.gt_sem_seg = PixelData(sem_seg=torch.from_numpy(sem)[None])
    return sample


def test_kmax_targets_equal_official_mapper(official):
    mapper = official['mapper']
    target, = targets_from_data_samples([panoptic_sample(mapper)], 3, 5)
    # the crowd thing and the thing lost by the stride-4 grid are gone
    assert target['labels'].tolist() == mapper['labels'].tolist() == [
        0, 1, 3, 4]
    assert target['masks'].dtype == torch.bool
    assert torch.equal(target['masks'], mapper['masks'])
    assert torch.equal(target['semantic_masks'], mapper['semantic'])


def test_kmax_stuff_only_sample_gives_stuff_targets():
    """An mmseg sample (no ``gt_instances``, semantic only) has one mask per
    class; with ``num_things_classes=0`` every class is stuff."""
    sem = torch.full((1, 9, 8), 255)
    sem[0, :4] = 0
    sem[0, 5:] = 2
    sample = SegDataSample(gt_sem_seg=PixelData(data=sem))
    target, = targets_from_data_samples([sample], 0, 3, stride=1)
    assert target['labels'].tolist() == [0, 2]
    assert target['masks'].sum((1, 2)).tolist() == [32, 32]
    assert (target['semantic_masks'] == -1).sum() == 8


@pytest.mark.parametrize('case, share', [('main', 'shared'),
                                         ('main', 'unshared'),
                                         ('zero', 'shared')])
def test_kmax_matching_equals_official(official, case, share):
    """Final layer (and every aux layer without shared matching)."""
    data = official[case]
    layers = [data['outputs']]
    if share == 'unshared':
        layers += data['outputs']['aux_outputs']
    expected = data[share]['indices']
    assert len(expected) == len(layers)
    for outputs, official_indices in zip(layers, expected):
        for b, target in enumerate(data['targets']):
            rows, cols, dice, prob = pq_matching(
                outputs['pred_logits'][b].float(),
                outputs['pred_masks'][b].float(), target['labels'],
                target['masks'])
            assert torch.equal(rows, official_indices[b][0])
            assert torch.equal(cols, official_indices[b][1])
            assert dice.shape == prob.shape == rows.shape
            assert ((prob > 0) & (prob < 1)).all()


@pytest.mark.parametrize('case, share', [('main', 'shared'),
                                         ('main', 'unshared'),
                                         ('zero', 'shared')])
def test_kmax_losses_equal_official(official, case, share, monkeypatch):
    data = official[case]
    sampled = []
    original = kmax_loss.gumbel_topk

    def recording(*args):
        sampled.append(original(*args))
        return sampled[-1]

    monkeypatch.setattr(kmax_loss, 'gumbel_topk', recording)
    criterion = criterion_for(official,
                              share_final_matching=share == 'shared')
    with torch.no_grad():
        losses = criterion.loss_by_targets(
            trainable(data['outputs']), data['targets'])
    expected = data[share]['losses']
    assert sorted(losses) == sorted(vitdense_name(k) for k in expected)
    for key, value in expected.items():
        torch.testing.assert_close(losses[vitdense_name(key)], value,
                                   atol=1e-4, rtol=0, msg=key)
    # the same pixels, drawn in the official order (insdis, aux semantic,
    # then each aux layer's insdis)
    assert len(sampled) == len(data[share]['sampled']) == 4
    for mine, theirs in zip(sampled, data[share]['sampled']):
        assert torch.equal(mine, theirs)


def test_kmax_gradients_equal_official(official):
    data = official['main']
    outputs = trainable(data['outputs'])
    losses = criterion_for(official).loss_by_targets(outputs,
                                                     data['targets'])
    sum(losses.values()).backward()
    expected = data['shared']['grads']
    for key in OUTPUT_KEYS + ('aux_semantic_pred', ):
        torch.testing.assert_close(outputs[key].grad, expected[key],
                                   atol=1e-5, rtol=0, msg=key)
    for mine, theirs in zip(outputs['aux_outputs'],
                            expected['aux_outputs']):
        for key in OUTPUT_KEYS:
            torch.testing.assert_close(mine[key].grad, theirs[key],
                                       atol=1e-5, rtol=0, msg=key)


def random_outputs(num_queries=6, size=(9, 11), num_aux=1, seed=0):
    g = torch.Generator().manual_seed(seed)

    def layer():
        return dict(
            pred_logits=torch.randn(2, num_queries, 6, generator=g),
            pred_masks=torch.randn(2, num_queries, *size, generator=g),
            pixel_feature=torch.nn.functional.normalize(
                torch.randn(2, 4, *size, generator=g), dim=1))

    outputs = trainable(layer())
    outputs['aux_outputs'] = [trainable(layer()) for _ in range(num_aux)]
    outputs['aux_semantic_pred'] = torch.randn(
        2, 6, *size, generator=g).requires_grad_(True)
    return outputs


def all_tensors(outputs):
    for key, value in outputs.items():
        if key == 'aux_outputs':
            for aux in value:
                yield from aux.values()
        else:
            yield value


def test_kmax_zero_segment_batch_gives_finite_losses_and_gradients():
    """Every image without a segment (all void): finite losses, finite
    gradients; the official default of 4096 samples on a 99-pixel map."""
    outputs = random_outputs()
    empty = DetDataSample(metainfo=dict(batch_input_shape=(36, 44)))
    empty.gt_instances = InstanceData(
        labels=torch.zeros(0, dtype=torch.int64),
        masks=BitmapMasks(np.zeros((0, 36, 44), np.uint8), 36, 44))
    empty.gt_sem_seg = PixelData(
        sem_seg=torch.full((1, 36, 44), 255, dtype=torch.uint8))
    criterion = KMaXCriterion(3, 2, seed=0)
    losses = criterion(outputs, [empty, empty])
    assert sorted(losses) == [
        'd0.loss_cls', 'd0.loss_dice', 'd0.loss_insdis', 'd0.loss_mask',
        'loss_aux_semantic', 'loss_cls', 'loss_dice', 'loss_insdis',
        'loss_mask'
    ]
    for value in losses.values():
        assert torch.isfinite(value)
    # nothing to match: only the void class term is left
    assert losses['loss_mask'] == losses['loss_dice'] == 0
    assert losses['loss_insdis'] == losses['loss_aux_semantic'] == 0
    assert losses['loss_cls'] > 0
    sum(losses.values()).backward()
    assert outputs['pred_logits'].grad.abs().sum() > 0
    for tensor in all_tensors(outputs):
        assert torch.isfinite(tensor.grad).all()


def test_kmax_stuff_only_image_trains():
    """A stuff-only image next to an image with things: finite losses
    whose gradients reach the masks."""
    outputs = random_outputs(size=(9, 9))
    sem = torch.full((1, 33, 33), 255)
    sem[0, :16] = 3
    sem[0, 20:] = 4
    stuff = DetDataSample(metainfo=dict(batch_input_shape=(33, 33)))
    stuff.gt_instances = InstanceData(
        labels=torch.zeros(0, dtype=torch.int64),
        masks=BitmapMasks(np.zeros((0, 33, 33), np.uint8), 33, 33))
    stuff.gt_sem_seg = PixelData(sem_seg=sem)
    things = DetDataSample(metainfo=dict(batch_input_shape=(33, 33)))
    thing_mask = np.zeros((1, 30, 31), np.uint8)
    thing_mask[0, 4:20, 4:20] = 1
    things.gt_instances = InstanceData(labels=torch.tensor([1]),
                                       masks=BitmapMasks(thing_mask, 30, 31))
    things.gt_sem_seg = PixelData(sem_seg=torch.where(
        torch.from_numpy(thing_mask[0]).bool(), 1, 3)[None])
    criterion = KMaXCriterion(3, 2, seed=0)
    targets = targets_from_data_samples([stuff, things], 3, 5)
    assert [t['labels'].tolist() for t in targets] == [[3, 4], [1, 3]]
    losses = criterion(outputs, [stuff, things])
    for value in losses.values():
        assert torch.isfinite(value) and value > 0
    sum(losses.values()).backward()
    assert outputs['pred_masks'].grad.abs().sum() > 0


def test_kmax_pixel_sampling_is_seedable():
    outputs = random_outputs(size=(17, 17))
    first = torch.arange(17 * 17).view(17, 17) < 100
    target = dict(labels=torch.tensor([0, 3]),
                  masks=torch.stack([first, ~first]),
                  semantic_masks=torch.where(first, 0, 3))

    def run(seed):
        criterion = KMaXCriterion(3, 2, seed=seed, insdis_sample_k=64)
        with torch.no_grad():
            losses = criterion.loss_by_targets(outputs, [target] * 2)
        return losses['loss_insdis']

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_kmax_criterion_builds_from_config_and_checks_inputs():
    criterion = MODELS.build(
        dict(type='KMaXCriterion', num_things_classes=3, num_stuff_classes=2,
             loss_weights=dict(insdis=0.0, aux_semantic=0.0),
             deep_supervision=False))
    assert criterion.loss_weights == dict(cls=3.0, dice=3.0, mask=0.3,
                                          insdis=0.0, aux_semantic=0.0)
    outputs = random_outputs()
    target = dict(labels=torch.tensor([1]),
                  masks=torch.ones(1, 9, 11, dtype=torch.bool),
                  semantic_masks=torch.ones(9, 11, dtype=torch.int64))
    losses = criterion.loss_by_targets(outputs, [target, target])
    assert sorted(losses) == ['loss_cls', 'loss_dice', 'loss_mask']
    with pytest.raises(ValueError, match=r'kmax_loss.py: unknown '
                       r"loss_weights \['ce'\]"):
        KMaXCriterion(3, 2, loss_weights=dict(ce=1.0))
    del outputs['aux_semantic_pred']
    with pytest.raises(ValueError, match='outputs lack aux_semantic_pred'):
        KMaXCriterion(3, 2).loss_by_targets(outputs, [target, target])
    small = dict(target, masks=torch.ones(1, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r'GT masks are \(5, 5\) but '
                       r'pred_masks \(9, 11\)'):
        criterion.loss_by_targets(outputs, [small, small])
