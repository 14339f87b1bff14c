"""ViDT: official parity (end to end and of the detector alone), the
converter, padding masks, zero-GT images and training.

``tests/data/vidt/vidt_tiny_official.pth`` comes from the official code at
naver-ai/vidt@5207d04 (branch ``main``); its README gives the settings.
"""
import os.path as osp

import pytest
import torch
from _vidt import (DATA, build, config_model, load_official, make_batch,
                   preprocess_raw_images, tiny_cfg)
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from torch import nn

COCO_CONFIG = osp.join('configs', 'vidt', 'vidt_swin-t_8xb2-50e_coco.py')


@pytest.fixture(scope='module')
def official() -> dict:
    return load_official('vidt_tiny_official.pth')


def coco_config_model(repo_root: str, settings: dict):
    """``vidt_swin-t_8xb2-50e_coco.py`` at the fixture's size."""
    return config_model(repo_root, COCO_CONFIG, settings,
                        num_classes=settings['num_classes'])


def assert_matches_official(cls_scores, bbox_preds, data) -> None:
    """Every prediction layer (the backbone's [DET] tokens and each decoder
    layer) matches the official logits and boxes to 1e-4."""
    layers = data['settings']['dec_layers'] + 1
    assert cls_scores.shape == data['cls_scores'].shape == (layers, 2, 10, 10)
    for i in range(layers):
        torch.testing.assert_close(
            cls_scores[i], data['cls_scores'][i], atol=1e-4, rtol=0)
        torch.testing.assert_close(
            bbox_preds[i], data['bbox_preds'][i], atol=1e-4, rtol=0)


# --------------------------------------------------------------------------
# official parity
# --------------------------------------------------------------------------
def test_vidt_matches_official_model(official, repo_root):
    """The converted official checkpoint loads strictly into the shipped
    COCO config (at the fixture's size); two raw images of odd, different
    sizes through the config's data preprocessor (padding mask) give the
    official outputs of every layer and the official detections."""
    from vitdense.converters.vidt import convert_vidt
    data = official
    model = coco_config_model(repo_root, data['settings']).eval()
    model.load_state_dict(
        convert_vidt({'model': data['state_dict']}), strict=True)
    batch = preprocess_raw_images(model, data['images'])
    with torch.no_grad():
        feats = model.extract_feat(batch['inputs'], batch['data_samples'])
        head_inputs = model.forward_transformer(feats, batch['data_samples'])
        cls_scores, bbox_preds = model.bbox_head(**head_inputs)
        results = model.predict(batch['inputs'], batch['data_samples'])
    assert torch.equal(feats[3], data['mask'])  # the official padding mask
    assert_matches_official(cls_scores, bbox_preds, data)
    for result, expected, image in zip(results, data['detections'],
                                       data['images']):
        pred = result.pred_instances
        h, w = image.shape[1:]
        boxes = expected['boxes'].clone()  # mmdet clips to the image
        boxes[:, 0::2].clamp_(0, w)
        boxes[:, 1::2].clamp_(0, h)
        assert torch.equal(pred.labels, expected['labels'])
        torch.testing.assert_close(
            pred.scores, expected['scores'], atol=1e-4, rtol=0)
        torch.testing.assert_close(
            pred.bboxes, boxes, atol=1e-4 * max(h, w), rtol=0)


class _RecordedBackbone(nn.Module):
    """Returns the official backbone's recorded outputs (the detector alone
    under test) in SwinRAM's layout."""

    def __init__(self, outputs: dict) -> None:
        super().__init__()
        self.outputs = outputs
        self.mask = None

    def forward(self, x, mask=None):
        self.mask = mask
        return (self.outputs['features'],
                self.outputs['det_tgt'].transpose(1, 2),
                self.outputs['det_pos'].transpose(1, 2))


def test_vidt_detector_matches_official_on_recorded_backbone_outputs(
        official, repo_root):
    """Projections, reference points, decoder, refinement and heads alone:
    fed the official backbone's outputs, every layer matches."""
    from vitdense.converters.vidt import convert_vidt_detector
    data = official
    model = coco_config_model(repo_root, data['settings']).eval()
    state_dict = convert_vidt_detector(data['state_dict'])
    assert not any(k.startswith('backbone.') for k in state_dict)
    model.backbone = _RecordedBackbone(data['backbone_outputs'])
    model.load_state_dict(state_dict, strict=True)
    batch = preprocess_raw_images(model, data['images'])
    with torch.no_grad():
        cls_scores, bbox_preds = model._forward(batch['inputs'],
                                                batch['data_samples'])
    assert torch.equal(model.backbone.mask, data['mask'])
    assert_matches_official(cls_scores, bbox_preds, data)


# --------------------------------------------------------------------------
# converter
# --------------------------------------------------------------------------
def test_converter_maps_every_official_key(official):
    from vitdense.converters.vidt import convert_vidt
    state_dict = official['state_dict']
    out = convert_vidt(state_dict)
    # dropped: the decoder's alias of the box branches, the unused level
    # embedding, the backbone's unused norms/expansions and index buffers
    assert 'transformer.level_embed' in state_dict
    assert not any(k.startswith('transformer.') for k in out)
    layers = official['settings']['dec_layers']
    assert {k.split('.')[2] for k in out
            if k.startswith('bbox_head.cls_branches.')} == {
                str(i) for i in range(layers + 1)}
    torch.testing.assert_close(out['query_proj.1.weight'],
                               state_dict['tgt_proj.1.weight'])
    torch.testing.assert_close(out['neck.convs.3.conv.bias'],
                               state_dict['input_proj.3.0.bias'])
    torch.testing.assert_close(
        out['bbox_head.reg_branches.2.4.weight'],
        state_dict['bbox_embed.2.layers.2.weight'])


def test_converter_selects_classes(official):
    from vitdense.converters.vidt import convert_vidt_detector
    index = torch.tensor([3, 1])
    out = convert_vidt_detector(official['state_dict'], class_index=index)
    assert out['bbox_head.cls_branches.0.weight'].shape[0] == 2
    torch.testing.assert_close(
        out['bbox_head.cls_branches.1.bias'],
        official['state_dict']['class_embed.1.bias'][index])


def test_converter_refuses_other_layouts_and_inconsistent_files(official):
    from vitdense.converters.io import CheckpointLayoutError
    from vitdense.converters.vidt import convert_vidt_detector
    with pytest.raises(CheckpointLayoutError, match='not an official ViDT'):
        convert_vidt_detector({'backbone.det_token': torch.zeros(1)})
    state_dict = dict(official['state_dict'])
    key = 'transformer.decoder.bbox_embed.1.layers.0.bias'
    state_dict[key] = state_dict[key] + 1
    with pytest.raises(CheckpointLayoutError, match='differs from bbox_embed'):
        convert_vidt_detector(state_dict)
    state_dict = dict(official['state_dict'])
    state_dict['segm_head.0.weight'] = torch.zeros(1)
    with pytest.raises(KeyError, match='no counterpart.*segm_head'):
        convert_vidt_detector(state_dict)


def _converter_tool(repo_root: str):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'vidt2vitdense',
        osp.join(repo_root, 'tools', 'model_converters', 'vidt2vitdense.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_converter_tool_output_loads_strictly(official, tmp_path, repo_root):
    tool = _converter_tool(repo_root)
    src, dst = str(tmp_path / 'official.pth'), str(tmp_path / 'out.pth')
    torch.save({'model': official['state_dict'], 'epoch': 49}, src)
    tool.convert(src, dst)
    state_dict = torch.load(dst, weights_only=True)['state_dict']
    model = coco_config_model(repo_root, official['settings'])
    model.load_state_dict(state_dict, strict=True)


def test_converter_tool_refuses_pickled_objects(official, tmp_path,
                                                repo_root):
    """The released files also pickle the training ``argparse.Namespace``;
    nothing of it is unpickled."""
    import argparse

    from vitdense.converters import PickledObjectsError
    tool = _converter_tool(repo_root)
    src = str(tmp_path / 'released.pth')
    torch.save({'model': official['state_dict'],
                'args': argparse.Namespace(lr=1e-4)}, src)
    with pytest.raises(PickledObjectsError, match='argparse.Namespace'):
        tool.convert(src, str(tmp_path / 'out.pth'))
    assert not osp.exists(tmp_path / 'out.pth')


# --------------------------------------------------------------------------
# EPFF as ViDT's neck (the neck alone: tests/test_models/test_necks)
# --------------------------------------------------------------------------
def test_detector_converter_maps_the_official_fusion_to_the_neck(official):
    from vitdense.converters.vidt import convert_vidt_detector
    fusion = torch.load(
        osp.join(DATA, 'epff_official.pth'), weights_only=True)['state_dict']
    state_dict = {
        k: v
        for k, v in official['state_dict'].items()
        if not k.startswith('input_proj.')
    }
    state_dict.update({f'fusion.{k}': v for k, v in fusion.items()})
    out = convert_vidt_detector(state_dict)
    assert not any(k.startswith('neck.convs') for k in out)
    assert torch.equal(out['neck.fuse.0.lateral.conv2.weight'],
                       fusion['multi_scaler.refinenet_0.resConfUnit1.conv2.'
                              'weight'])
    assert 'neck.fuse.2.out.conv1.bias' in out
    assert not any(k.startswith(('neck.fuse.2.smooth', 'neck.fuse.2.lateral'))
                   for k in out)  # never called by the official forward


def test_vidt_with_epff_trains_every_parameter():
    """With EPFF as the neck every parameter gets a gradient (no unused
    parameters to break distributed training)."""
    model = build(tiny_cfg(neck=dict(
        type='EPFF', in_channels=[32, 64, 128, 64], out_channels=64))).train()
    inputs, samples = make_batch(model)
    loss, _ = model.parse_losses(model.loss(inputs, samples))
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


# --------------------------------------------------------------------------
# losses (and ViDT+'s IoU-aware branch)
# --------------------------------------------------------------------------
def iou_aware_head(num_classes: int = 5, dims: int = 64, layers: int = 3):
    init_default_scope('mmdet')
    import vitdense.models  # noqa: F401
    from vitdense.registry import MODELS
    return MODELS.build(dict(
        type='ViDTHead',
        num_classes=num_classes,
        embed_dims=dims,
        num_pred_layer=layers,
        share_pred_layer=False,
        as_two_stage=False,
        sync_cls_avg_factor=True,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                      alpha=0.25, loss_weight=2.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0),
        loss_iou_aware=dict(type='CrossEntropyLoss', use_sigmoid=True,
                            loss_weight=2.0),
        train_cfg=tiny_cfg()['train_cfg']))


def test_losses_match_official_criterion():
    """On the same predictions, mmdet's matching and losses of the head
    (the ViDT config's costs and weights) give the official ``SetCriterion``
    (focal, L1, GIoU and IoU-aware, every layer) times the official
    coefficients 2 / 5 / 2 / 2."""
    from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
    data = torch.load(osp.join(DATA, 'vidt_losses_official.pth'),
                      weights_only=True)
    head = iou_aware_head()
    gts, metas = [], []
    for target, (h, w) in zip(data['targets'], data['img_shapes']):
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        gts.append(InstanceData(
            bboxes=bbox_cxcywh_to_xyxy(target['boxes']) * scale,
            labels=target['labels']))
        metas.append(dict(img_shape=(h, w)))
    losses = head.loss_by_feat(
        data['logits'], data['boxes'], None, None, gts, metas,
        all_layers_iou_preds=data['ious'])
    official = data['losses']
    names = dict(loss_cls=('loss_ce', 2.), loss_bbox=('loss_bbox', 5.),
                 loss_iou=('loss_giou', 2.),
                 loss_iou_aware=('loss_iouaware', 2.))
    for ours, (theirs, coef) in names.items():
        for layer in range(2):
            torch.testing.assert_close(
                losses[f'd{layer}.{ours}'].item(),
                coef * official[f'{theirs}_{layer}'], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            losses[ours].item(), coef * official[theirs], atol=1e-5,
            rtol=1e-5)


def test_vidt_with_iou_aware_head_trains():
    """The IoU-aware branch: one per prediction layer with box
    refinement, a loss for each, gradients into the branch (also without
    ground truth) and, through the un-detached IoU target as the official,
    into the boxes; inference unchanged."""
    head = dict(tiny_cfg()['bbox_head'], type='ViDTHead',
                loss_iou_aware=dict(type='CrossEntropyLoss',
                                    use_sigmoid=True, loss_weight=2.0))
    model = build(tiny_cfg(bbox_head=head)).train()
    assert len(model.bbox_head.iou_branches) == 3
    for num_gts in ((2, 3), (0, 0)):
        model.zero_grad()
        inputs, samples = make_batch(model, num_gts=num_gts)
        losses = model.loss(inputs, samples)
        assert {k for k in losses if 'iou_aware' in k} == {
            'd0.loss_iou_aware', 'd1.loss_iou_aware', 'loss_iou_aware'}
        loss, _ = model.parse_losses(losses)
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    inputs, samples = make_batch(model)
    losses = model.loss(inputs, samples)
    losses['loss_iou_aware'].backward()
    assert model.bbox_head.reg_branches[2][-1].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert len(model.predict(inputs, samples)[0].pred_instances) == 10


def test_converter_maps_the_official_iou_branches(official, repo_root):
    """Official ``iou_embed`` (``MLP(d, d, 1, 3)`` per layer) -> the
    ViDTHead IoU branches: strict load, same logits as the official MLP."""
    from vitdense.converters.vidt import convert_vidt
    state_dict = dict(official['state_dict'])
    g = torch.Generator().manual_seed(0)
    dims = official['settings']['d_model']
    for i in range(official['settings']['dec_layers'] + 1):
        for j, (out, inp) in enumerate(((dims, dims), (dims, dims),
                                        (1, dims))):
            state_dict[f'iou_embed.{i}.layers.{j}.weight'] = torch.randn(
                out, inp, generator=g) / inp**0.5
            state_dict[f'iou_embed.{i}.layers.{j}.bias'] = torch.randn(
                out, generator=g)
    model = coco_config_model(repo_root, official['settings'])
    model.bbox_head = iou_aware_head(
        official['settings']['num_classes'], dims, layers=4)
    model.load_state_dict(convert_vidt(state_dict), strict=True)
    hidden = torch.randn(4, 2, 10, dims, generator=g)
    x = hidden[2]
    for j in range(3):
        x = torch.nn.functional.linear(
            x, state_dict[f'iou_embed.2.layers.{j}.weight'],
            state_dict[f'iou_embed.2.layers.{j}.bias'])
        x = x.relu() if j < 2 else x
    with torch.no_grad():
        torch.testing.assert_close(
            model.bbox_head.forward_iou(hidden)[2], x[..., 0])


# --------------------------------------------------------------------------
# behaviour
# --------------------------------------------------------------------------
def test_every_prediction_layer_is_supervised():
    """The backbone's [DET] tokens are prediction layer 0 and every decoder
    layer another: losses d0..d{L-1} plus the last, all finite."""
    model = build(tiny_cfg()).train()
    inputs, samples = make_batch(model)
    losses = model.loss(inputs, samples)
    assert {k for k in losses if k.endswith('loss_cls')} == {
        'd0.loss_cls', 'd1.loss_cls', 'loss_cls'}
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize('num_gts', [(0, 3), (0, 0)])
def test_images_without_ground_truth_train(num_gts):
    model = build(tiny_cfg()).train()
    inputs, samples = make_batch(model, num_gts=num_gts)
    loss, _ = model.parse_losses(model.loss(inputs, samples))
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters())
    # the class loss reaches the [DET] tokens and the decoder (the reference
    # points only get box gradients, none without ground truth, as the
    # official: refined references are detached)
    for param in (model.backbone.det_token, model.query_proj[0].weight,
                  model.decoder.layers[1].cross_attn.sampling_offsets.weight):
        assert param.grad.abs().sum() > 0


def test_padding_mask_reaches_backbone_and_decoder():
    """Different odd sizes: True exactly on each image's padding, for the
    backbone and (resized) for the decoder's memory; none for a batch of
    equal sizes, as the official all-valid mask."""
    model = build(tiny_cfg()).eval()
    inputs, samples = make_batch(model, sizes=((61, 75), (53, 47)))
    assert inputs.shape[-2:] == (61, 75)
    mask = model.padding_mask(inputs, samples)
    assert mask.shape == (2, 61, 75)
    assert not mask[0].any()
    assert not mask[1, :53, :47].any()
    assert mask[1, 53:].all() and mask[1, :, 47:].all()
    with torch.no_grad():
        feats = model.extract_feat(inputs, samples)
        decoder_inputs, _ = model.pre_transformer(feats[0], feats[3])
    ratios = decoder_inputs['valid_ratios']
    assert torch.equal(ratios[0], torch.ones(4, 2))
    assert (ratios[1, 0] < 1).all() and (ratios[1] <= 1).all()
    assert decoder_inputs['memory_mask'].shape == (
        2, decoder_inputs['memory'].shape[1])
    same, same_samples = make_batch(model, sizes=((45, 45), (45, 45)))
    assert model.padding_mask(same, same_samples) is None


def test_predicts_boxes_inside_odd_sized_images():
    model = build(tiny_cfg()).eval()
    inputs, samples = make_batch(model, sizes=((61, 75), (53, 47)))
    with torch.no_grad():
        results = model.predict(inputs, samples)
    for result, (h, w) in zip(results, ((61, 75), (53, 47))):
        pred = result.pred_instances
        assert len(pred) == 10  # max_per_img
        assert (pred.bboxes[:, 0::2] <= w).all()
        assert (pred.bboxes[:, 1::2] <= h).all()
        assert ((pred.scores > 0) & (pred.scores < 1)).all()


def test_without_box_refine_all_layers_share_heads_and_points():
    model = build(tiny_cfg(with_box_refine=False)).eval()
    head = model.bbox_head
    assert all(b is head.cls_branches[0] for b in head.cls_branches)
    assert len(head.cls_branches) == 3
    inputs, samples = make_batch(model)
    with torch.no_grad():
        out = model.forward_transformer(
            model.extract_feat(inputs, samples), samples)
    refs = out['references']
    assert len(refs) == 3 and all(r.shape[-1] == 2 for r in refs)
    assert all(torch.equal(r, refs[0]) for r in refs)


def test_query_count_must_match_the_det_tokens():
    model = build(tiny_cfg(num_queries=7)).eval()
    inputs, samples = make_batch(model)
    with pytest.raises(ValueError, match='gave 10 \\[DET\\] tokens but '
                       'num_queries is 7'):
        model.predict(inputs, samples)


def test_a_few_training_iterations_lower_the_loss():
    torch.manual_seed(0)
    model = build(tiny_cfg()).train()
    inputs, samples = make_batch(model, seed=3)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(8):
        loss, _ = model.parse_losses(model.loss(inputs, samples))
        optim.zero_grad()
        loss.backward()
        optim.step()
        history.append(loss.item())
    assert history[-1] < 0.9 * history[0], history
    assert sum(history[-3:]) < sum(history[:3]), history
