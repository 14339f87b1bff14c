"""ViDT+ switches on the ViDT detector: UQR mask vectors, token labeling,
EPFF and the IoU-aware branch, each on or off (the paper's ablation
ladder); official end-to-end parity, the converter and the masks error.

``tests/data/vidt/vidtplus_tiny_official.pth`` comes from the official code
at naver-ai/vidt@a8c48b5 (branch ``vidt-plus``); ``plus_README.md`` gives
the settings.
"""
import os.path as osp

import pytest
import torch
from _vidt import (build, config_model, load_official, make_batch,
                   preprocess_raw_images, tiny_cfg)
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData


def plus_cfg(vectors=True, token_label=True, epff=True, iou_aware=True,
             **overrides) -> dict:
    """``tiny_cfg`` with the chosen ViDT+ switches on."""
    cfg = tiny_cfg(**overrides)
    head = dict(cfg['bbox_head'], type='ViDTHead',
                with_mask_vectors=vectors,
                loss_vector=dict(type='MaskVectorLoss', mask_size=16,
                                 num_coeffs=20, loss_weight=3.0))
    if iou_aware:
        head['loss_iou_aware'] = dict(type='CrossEntropyLoss',
                                      use_sigmoid=True, loss_weight=2.0)
    cfg['bbox_head'] = head
    if token_label:
        cfg['token_label_head'] = dict(type='TokenLabelHead')
    if epff:
        cfg['neck'] = dict(type='EPFF', in_channels=[32, 64, 128, 64],
                           out_channels=64)
    return cfg


def with_masks(samples, seed=0):
    """Each ground-truth box filled as its mask (BitmapMasks at the
    image size, as ``LoadAnnotations(with_mask=True)`` gives)."""
    g = torch.Generator().manual_seed(seed)
    for sample in samples:
        h, w = sample.img_shape
        masks = torch.zeros((len(sample.gt_instances), h, w),
                            dtype=torch.uint8)
        for i, (x1, y1, x2, y2) in enumerate(
                sample.gt_instances.bboxes.round().long().tolist()):
            masks[i, y1:y2, x1:x2] = 1
            masks[i, y1:y2, x1:x2] &= (torch.rand(y2 - y1, x2 - x1,
                                                  generator=g) > 0.2).byte()
        sample.gt_instances.masks = BitmapMasks(masks.numpy(), h, w)
    return samples


SWITCHES = ('vectors', 'token_label', 'epff', 'iou_aware')


@pytest.mark.parametrize('on', [(), ('vectors', ), ('token_label', ),
                                ('epff', 'iou_aware'), SWITCHES])
def test_each_switch_trains_alone_and_together(on):
    """Every combination of the ladder builds, gives exactly its losses
    and a gradient to every parameter."""
    model = build(plus_cfg(**{k: k in on for k in SWITCHES})).train()
    inputs, samples = make_batch(model)
    losses = model.loss(inputs, with_masks(samples))
    keys = set(losses)
    assert ('loss_vector' in keys) == ('vectors' in on)
    assert {'d0.loss_vector', 'd1.loss_vector'} <= keys or \
        'vectors' not in on
    assert ('loss_token_focal' in keys and 'loss_token_dice' in keys) == (
        'token_label' in on)
    assert ('loss_iou_aware' in keys) == ('iou_aware' in on)
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_vector_branch_is_shared_and_initialised_as_official():
    model = build(plus_cfg())
    last = model.bbox_head.vector_branch[-1]
    assert last.out_features == 20
    assert not last.weight.any()
    assert torch.equal(last.bias[:2], torch.zeros(2))
    assert (last.bias[2:] == -2).all()
    assert [type(m).__name__ for m in model.bbox_head.vector_branch] == [
        'Linear', 'ReLU', 'Linear', 'ReLU', 'Linear']


def test_vector_loss_uses_each_layers_matching():
    """The vector loss of a layer equals MaskVectorLoss on that layer's
    matched queries and their ground truth's DCT vectors."""
    model = build(plus_cfg(token_label=False, epff=False,
                           iou_aware=False)).train()
    inputs, samples = make_batch(model)
    samples = with_masks(samples)
    head = model.bbox_head
    with torch.no_grad():
        head_inputs = model.forward_transformer(
            model.extract_feat(inputs, samples), samples)
        losses = head.loss(**head_inputs, batch_data_samples=samples)
        cls_scores, bbox_preds = head(head_inputs['hidden_states'],
                                      head_inputs['references'])
        vectors = head.forward_vectors(head_inputs['hidden_states'])
    from vitdense.models.losses.vidt_plus_loss import gt_masks_from_samples
    masks = gt_masks_from_samples(samples, inputs.shape[-2:], 'x',
                                  inputs.device)
    for layer, name in ((0, 'd0.loss_vector'), (2, 'loss_vector')):
        preds, targets = [], []
        for b, sample in enumerate(samples):
            gt = sample.gt_instances
            pred = InstanceData(
                scores=cls_scores[layer, b],
                bboxes=_to_pixels(bbox_preds[layer, b], sample.img_shape))
            assign = head.assigner.assign(pred, gt, sample.metainfo)
            pos = torch.nonzero(assign.gt_inds > 0).squeeze(-1)
            preds.append(vectors[layer, b, pos])
            targets.append(head.loss_vector.get_targets(
                masks[b], gt.bboxes)[assign.gt_inds[pos] - 1])
        expected = head.loss_vector(torch.cat(preds), torch.cat(targets))
        assert len(torch.cat(preds)) == 5
        torch.testing.assert_close(losses[name], expected)


def _to_pixels(boxes, img_shape):
    from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
    h, w = img_shape
    return bbox_cxcywh_to_xyxy(boxes) * boxes.new_tensor([w, h, w, h])


@pytest.mark.parametrize('switch,option', [('vectors', 'with_mask_vectors'),
                                           ('token_label',
                                            'token_label_head')])
def test_missing_masks_give_a_clear_error(switch, option):
    model = build(plus_cfg(**{k: k == switch for k in SWITCHES})).train()
    inputs, samples = make_batch(model)
    with pytest.raises(ValueError, match=f'`{option}` needs instance masks'):
        model.loss(inputs, samples)


@pytest.mark.parametrize('num_gts', [(0, 3), (0, 0)])
def test_images_without_ground_truth_train(num_gts):
    model = build(plus_cfg()).train()
    inputs, samples = make_batch(model, num_gts=num_gts)
    loss, _ = model.parse_losses(model.loss(inputs, with_masks(samples)))
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters())


def test_predicts_masks_at_the_original_size():
    """Odd sizes, a rescaled image: each detection's mask is its query's
    decoded vector pasted into its box at ``ori_shape``."""
    model = build(plus_cfg()).eval()
    inputs, samples = make_batch(model, sizes=((61, 75), (53, 47)))
    samples[1].set_metainfo(dict(ori_shape=(106, 94), scale_factor=(.5, .5)))
    with torch.no_grad():
        results = model.predict(inputs, samples)
    for result, (h, w) in zip(results, ((61, 75), (106, 94))):
        pred = result.pred_instances
        assert pred.masks.shape == (10, h, w)
        assert pred.masks.dtype == torch.bool
        for mask, box in zip(pred.masks, pred.bboxes):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            if len(ys):
                assert xs.min() >= box[0].floor() - 1
                assert xs.max() <= box[2].ceil() + 1


def test_a_few_training_iterations_lower_the_loss():
    """All four switches on: 8 AdamW steps on one batch lower the total
    loss and the mask-vector loss."""
    torch.manual_seed(0)
    model = build(plus_cfg()).train()
    inputs, samples = make_batch(model, seed=3)
    samples = with_masks(samples)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history, vector = [], []
    for _ in range(8):
        losses = model.loss(inputs, samples)
        loss, _ = model.parse_losses(losses)
        optim.zero_grad()
        loss.backward()
        optim.step()
        history.append(loss.item())
        vector.append(losses['loss_vector'].item())
    assert history[-1] < 0.9 * history[0], history
    assert vector[-1] < vector[0], vector


# --------------------------------------------------------------------------
# official end-to-end parity (naver-ai/vidt@a8c48b5, branch vidt-plus)
# --------------------------------------------------------------------------
PLUS_CONFIG = osp.join('configs', 'vidt', 'vidt-plus_swin-t_8xb2-50e_coco.py')


@pytest.fixture(scope='module')
def official() -> dict:
    return load_official('vidtplus_tiny_official.pth')


def plus_config_model(repo_root: str, settings: dict):
    """``vidt-plus_swin-t_8xb2-50e_coco.py`` at the fixture's size (the
    official 11-way heads hold class ids 1..10, as COCO's 91 hold the 80
    category ids)."""
    return config_model(
        repo_root, PLUS_CONFIG, settings,
        num_classes=settings['num_classes'] - 1,
        vector_hidden_dims=settings['vector_hidden_dim'])


def test_vidt_plus_matches_official_model(official, repo_root):
    """The converted official ViDT+ (EPFF, UQR, IoU-aware, token labeling)
    loads strictly into the shipped ViDT+ COCO config at the fixture's
    size; two raw images of odd, different sizes through the config's data
    preprocessor give the official class logits, boxes, mask vectors and
    IoU logits of every prediction layer, the official token logits, and
    the official pasted masks."""
    from vitdense.converters.vidt import convert_vidt
    data, settings = official, official['settings']
    classes = torch.arange(1, settings['num_classes'])
    model = plus_config_model(repo_root, settings).eval()
    model.load_state_dict(
        convert_vidt({'model': data['state_dict']}, class_index=classes),
        strict=True)
    batch = preprocess_raw_images(model, data['images'])
    head = model.bbox_head
    with torch.no_grad():
        feats = model.extract_feat(batch['inputs'], batch['data_samples'])
        head_inputs = model.forward_transformer(feats, batch['data_samples'])
        hidden = head_inputs['hidden_states']
        cls_scores, bbox_preds = head(**head_inputs)
        vectors = head.forward_vectors(hidden)
        ious = head.forward_iou(hidden)
        decoder_inputs, _ = model.pre_transformer(feats[0], feats[3])
        tokens = model.token_label_head(decoder_inputs['memory'],
                                        decoder_inputs['memory_mask'],
                                        decoder_inputs['spatial_shapes'])
        results = model.predict(batch['inputs'], batch['data_samples'])
    assert torch.equal(feats[3], data['mask'])  # the official padding mask
    layers = settings['dec_layers'] + 1
    assert vectors.shape == data['vector_preds'].shape == (layers, 2, 10, 256)
    for ours, theirs in ((cls_scores, data['cls_scores'][..., classes]),
                         (bbox_preds, data['bbox_preds']),
                         (vectors, data['vector_preds']),
                         (ious, data['iou_preds'])):
        assert ours.shape == theirs.shape
        for i in range(layers):
            torch.testing.assert_close(ours[i], theirs[i], atol=1e-4, rtol=0)
    token_rows = torch.cat((torch.zeros(1, dtype=torch.long), classes))
    assert len(tokens) == len(data['token_logits']) == 4
    for ours, theirs in zip(tokens, data['token_logits']):
        torch.testing.assert_close(ours, theirs[..., token_rows], atol=1e-4,
                                   rtol=0)
    # masks: each official top-10 detection (class id >= 1, box inside the
    # image, where mmdet's clipping changes nothing) is one of ours
    num_classes = settings['num_classes']
    checked = 0
    for b, (result, expected) in enumerate(zip(results, data['detections'])):
        h, w = data['images'][b].shape[1:]
        _, off_idx = data['cls_scores'][-1, b].sigmoid().flatten().topk(100)
        our_scores = cls_scores[-1, b].sigmoid().flatten()
        _, our_idx = our_scores.topk(len(result.pred_instances))
        ours = {(int(i) // (num_classes - 1), int(i) % (num_classes - 1) + 1):
                j for j, i in enumerate(our_idx)}
        for k, mask in enumerate(expected['masks']):
            query = int(off_idx[k]) // num_classes
            key = (query, int(expected['labels'][k]))
            box = expected['boxes'][k]
            inside = bool((box >= 0).all() and box[2] <= w and box[3] <= h)
            if key not in ours or not inside:
                continue
            pred = result.pred_instances
            j = ours[key]
            torch.testing.assert_close(pred.bboxes[j], box, atol=1e-3,
                                       rtol=0)
            assert torch.equal(pred.masks[j], mask)
            checked += 1
    assert checked >= 1


def test_converter_maps_the_official_vidt_plus_parts(official):
    """``vector_embed`` (one MLP shared by the layers) -> the vector
    branch; ``transformer.enc_output``/``enc_output_norm``/``token_embed``
    -> the token-label head, classifier rows ``[0] + class_index``."""
    from vitdense.converters.io import CheckpointLayoutError
    from vitdense.converters.vidt import convert_vidt_detector
    sd = official['state_dict']
    index = torch.tensor([3, 1])
    out = convert_vidt_detector(sd, class_index=index)
    assert torch.equal(out['bbox_head.vector_branch.4.bias'],
                       sd['vector_embed.0.layers.2.bias'])
    assert not any(k.startswith('bbox_head.vector_branch.') and
                   k.split('.')[2] not in '024' for k in out)
    assert torch.equal(out['token_label_head.proj.weight'],
                       sd['transformer.enc_output.weight'])
    assert torch.equal(out['token_label_head.norm.bias'],
                       sd['transformer.enc_output_norm.bias'])
    assert torch.equal(out['token_label_head.classifier.weight'],
                       sd['transformer.token_embed.weight'][[0, 3, 1]])
    assert torch.equal(out['bbox_head.iou_branches.3.4.weight'],
                       sd['iou_embed.3.layers.2.weight'])
    bad = dict(sd)
    bad['vector_embed.2.layers.1.weight'] = bad[
        'vector_embed.2.layers.1.weight'] + 1
    with pytest.raises(CheckpointLayoutError,
                       match='share one vector MLP'):
        convert_vidt_detector(bad)
