"""ViDT+ losses against the official ``SetCriterion`` (``loss_masks``,
``loss_iouaware``, ``loss_tokens``): values and gradients on random
predictions, batch 2 with one padded image, fixed matching; the clear error
when masks are required but missing; images without ground truth.

Fixture ``tests/data/vidt/plus_official.pth`` comes from naver-ai/vidt,
branch ``vidt-plus`` a8c48b5 (see ``tests/data/vidt/plus_README.md``).
"""
import os.path as osp

import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData

from vitdense.models.losses import (MaskVectorLoss, TokenLabelLoss,
                                    gt_masks_from_samples)
from vitdense.registry import MODELS

FIXTURE = osp.join(osp.dirname(osp.dirname(osp.dirname(__file__))), 'data',
                   'vidt', 'plus_official.pth')


@pytest.fixture(scope='module')
def official():
    return torch.load(FIXTURE, weights_only=True)['losses']


def _samples(data, with_masks=True):
    samples = []
    for masks, labels, bboxes in zip(data['gt_masks'], data['gt_labels'],
                                     data['gt_bboxes']):
        sample = DetDataSample(
            metainfo=dict(img_shape=tuple(masks.shape[1:]),
                          img_path=f'img{len(samples)}.jpg'))
        inst = InstanceData(labels=labels, bboxes=bboxes)
        if with_masks:
            h, w = masks.shape[1:]
            inst.masks = BitmapMasks(masks.numpy().astype('uint8'), h, w)
        sample.gt_instances = inst
        samples.append(sample)
    return samples


def _padded_masks(data):
    return gt_masks_from_samples(_samples(data), data['pad_shape'],
                                 'with_vector', torch.device('cpu'))


def test_gt_masks_from_samples_pads_to_the_batch(official):
    masks = _padded_masks(official)
    assert [m.shape for m in masks] == [(3, 61, 87), (2, 61, 87)]
    assert masks[1].dtype == torch.bool
    assert torch.equal(masks[1][:, :53, :71], official['gt_masks'][1])
    assert not masks[1][:, 53:].any() and not masks[1][:, :, 71:].any()


def test_mask_vector_loss_matches_official(official):
    masks = _padded_masks(official)
    src = [s for s, _ in official['indices']]
    tgt = [t for _, t in official['indices']]
    pred = official['pred_vectors'].clone().requires_grad_()
    matched = torch.cat([pred[b, s] for b, s in enumerate(src)])
    gt_masks = torch.cat([m[t] for m, t in zip(masks, tgt)])
    gt_bboxes = torch.cat([bb[t] for bb, t in zip(official['gt_bboxes'], tgt)])
    loss_fn = MODELS.build(dict(type='MaskVectorLoss'))
    targets = loss_fn.get_targets(gt_masks, gt_bboxes)
    torch.testing.assert_close(
        loss_fn.get_targets(gt_masks, HorizontalBoxes(gt_bboxes)), targets)
    loss = loss_fn(matched, targets)
    assert abs(loss.item() - official['loss_vector'].item()) <= 1e-4
    loss.backward()
    assert (pred.grad - official['grad_vectors']).abs().max() <= 1e-4


def test_mask_vector_loss_without_matches_is_zero():
    pred = torch.randn(0, 256, requires_grad=True)
    loss_fn = MaskVectorLoss()
    targets = loss_fn.get_targets(torch.zeros(0, 8, 8, dtype=torch.bool),
                                  torch.zeros(0, 4))
    assert targets.shape == (0, 256)
    loss = loss_fn(pred, targets)
    assert loss.item() == 0 and loss.requires_grad


def test_token_label_loss_matches_official(official):
    masks = _padded_masks(official)
    logits = [t.clone().requires_grad_() for t in official['token_logits']]
    loss_fn = MODELS.build(
        dict(type='TokenLabelLoss', num_classes=official['num_classes']))
    losses = loss_fn(logits, masks, official['gt_labels'],
                     official['num_boxes'])
    for name in ('loss_token_focal', 'loss_token_dice'):
        # official token_loss_coef 2 on both
        assert abs(losses[name].item() -
                   2 * official[name].item()) <= 1e-4, name
    (losses['loss_token_focal'] + losses['loss_token_dice']).backward()
    for grad, exp in zip(logits, official['grad_token_logits']):
        # the official gradient is that of the unweighted sum
        assert (grad.grad - 2 * exp).abs().max() <= 1e-4


def test_token_targets_first_instance_keeps_overlap():
    loss_fn = TokenLabelLoss(num_classes=3)
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :, :2] = True  # class 2, left half
    masks[1, :, 1:3] = True  # class 0, overlaps column 1
    target = loss_fn.token_targets([masks], [torch.tensor([2, 0])], (1, 2))
    # token 0 covers columns 0-1 (all class 2), token 1 columns 2-3
    torch.testing.assert_close(
        target[0, 0], torch.tensor([[1., 0., 0., 1.], [0.5, 0.5, 0., 0.]]))


def test_token_label_loss_with_an_image_without_objects():
    loss_fn = TokenLabelLoss(num_classes=2)
    logits = [torch.randn(2, 3, 5, 3, requires_grad=True)]
    masks = [
        torch.zeros(0, 12, 20, dtype=torch.bool),
        torch.ones(1, 12, 20, dtype=torch.bool)
    ]
    losses = loss_fn(logits, masks, [torch.zeros(0), torch.tensor([1])], 1.)
    total = losses['loss_token_focal'] + losses['loss_token_dice']
    total.backward()
    assert torch.isfinite(total) and total > 0
    assert logits[0].grad[0].abs().sum() > 0


def test_missing_masks_raise_a_clear_error(official):
    samples = _samples(official, with_masks=False)
    with pytest.raises(ValueError) as err:
        gt_masks_from_samples(samples, (61, 87), 'token_label',
                              torch.device('cpu'))
    msg = str(err.value)
    assert '`token_label`' in msg and '`gt_instances.masks`' in msg
    assert 'img0.jpg' in msg and 'with_mask=True' in msg


def test_iou_aware_loss_matches_official(official):
    """ViDT+'s IoU-aware term lives in ``ViDTHead`` (BCE x 2 against the
    IoU of the matched boxes, official ``loss_iouaware``)."""
    vidt_head = pytest.importorskip('vitdense.models.dense_heads.vidt_head')
    head = vidt_head.ViDTHead(num_classes=3,
                              embed_dims=16,
                              num_pred_layer=1,
                              loss_cls=dict(type='mmdet.FocalLoss',
                                            use_sigmoid=True,
                                            gamma=2.0,
                                            alpha=0.25,
                                            loss_weight=2.0),
                              loss_iou_aware=dict(
                                  type='mmdet.CrossEntropyLoss',
                                  use_sigmoid=True,
                                  loss_weight=2.0))
    num_queries = official['pred_boxes'].shape[1]
    bbox_targets, bbox_weights = [], []
    for (src, tgt), boxes in zip(official['indices'],
                                 official['gt_bboxes_cxcywh']):
        target = torch.zeros(num_queries, 4)
        weight = torch.zeros(num_queries, 4)
        target[src] = boxes[tgt]
        weight[src] = 1
        bbox_targets.append(target)
        bbox_weights.append(weight)
    targets = (None, None, bbox_targets, bbox_weights, 5, 15)
    iou_preds = official['pred_ious'][..., 0].clone().requires_grad_()
    loss = head._iou_aware_loss(iou_preds, official['pred_boxes'], targets)
    assert abs(loss.item() - 2 * official['loss_iouaware'].item()) <= 1e-4
    loss.backward()
    assert (iou_preds.grad -
            2 * official['grad_ious'][..., 0]).abs().max() <= 1e-4
