"""Relation-DETR: official parity, masks of the denoising/hybrid branches,
training behaviour and the "DINO + relation" plug-in.

Fixtures in ``tests/data/relation_detr`` come from the official code at
xiuqhou/Relation-DETR@b485955 (see the README there for the settings).
"""
import copy
import os.path as osp

import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

DATA = osp.join(osp.dirname(osp.dirname(osp.dirname(__file__))), 'data',
                'relation_detr')
IMG = 64  # 8x8 + 4x4 + 2x2 + 1x1 = 85 memory tokens


def _load(name: str) -> dict:
    return torch.load(osp.join(DATA, name), weights_only=False)


def tiny_model_cfg(**overrides) -> dict:
    """Relation-DETR at the size of the official parity fixture."""
    embed, levels = 32, 4
    cfg = dict(
        type='RelationDETR',
        num_queries=20,
        num_hybrid_queries=30,
        with_box_refine=True,
        as_two_stage=True,
        num_feature_levels=levels,
        data_preprocessor=dict(
            type='DetDataPreprocessor',
            mean=[0., 0., 0.],
            std=[1., 1., 1.],
            pad_size_divisor=1),
        backbone=dict(
            type='ResNet',
            depth=18,
            base_channels=8,
            num_stages=4,
            out_indices=(1, 2, 3),
            norm_cfg=dict(type='BN'),
            style='pytorch'),
        neck=dict(
            type='ChannelMapper',
            in_channels=[16, 32, 64],
            kernel_size=1,
            out_channels=embed,
            act_cfg=None,
            norm_cfg=dict(type='GN', num_groups=32),
            num_outs=levels),
        encoder=dict(
            num_layers=2,
            layer_cfg=dict(
                self_attn_cfg=dict(
                    embed_dims=embed, num_levels=levels, dropout=0.0),
                ffn_cfg=dict(
                    embed_dims=embed, feedforward_channels=64,
                    ffn_drop=0.0))),
        decoder=dict(
            num_layers=3,
            return_intermediate=True,
            layer_cfg=dict(
                self_attn_cfg=dict(
                    embed_dims=embed, num_heads=8, dropout=0.0),
                cross_attn_cfg=dict(
                    embed_dims=embed, num_levels=levels, dropout=0.0),
                ffn_cfg=dict(
                    embed_dims=embed, feedforward_channels=64,
                    ffn_drop=0.0)),
            post_norm_cfg=None),
        positional_encoding=dict(
            num_feats=embed // 2, normalize=True, offset=-0.5,
            temperature=10000),
        bbox_head=dict(
            type='RelationDETRHead',
            num_classes=5,
            embed_dims=embed,
            hybrid_assign=6,
            sync_cls_avg_factor=True,
            loss_cls=dict(type='IoUVarifocalLoss', alpha=0.25, gamma=2.0),
            loss_bbox=dict(type='L1Loss', loss_weight=5.0),
            loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
        dn_cfg=dict(
            label_noise_scale=0.5,
            box_noise_scale=1.0,
            group_cfg=dict(dynamic=True, num_groups=None,
                           num_dn_queries=10)),
        train_cfg=dict(
            assigner=dict(
                type='HungarianAssigner',
                match_costs=[
                    dict(type='FocalLossCost', weight=2.0),
                    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                    dict(type='IoUCost', iou_mode='giou', weight=2.0)
                ])),
        test_cfg=dict(max_per_img=20))
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def build(cfg: dict):
    init_default_scope('mmdet')
    import vitdense.models  # noqa: F401
    from mmdet.registry import MODELS
    model = MODELS.build(copy.deepcopy(cfg))
    model.init_weights()
    return model


def make_batch(num_gts=(2, 3), size=IMG, seed=0):
    from mmdet.structures import DetDataSample
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(len(num_gts), 3, size, size, generator=g)
    samples = []
    for n in num_gts:
        meta = dict(
            img_shape=(size, size),
            batch_input_shape=(size, size),
            ori_shape=(size, size),
            pad_shape=(size, size),
            scale_factor=(1., 1.))
        sample = DetDataSample(metainfo=meta)
        xy = torch.rand(n, 2, generator=g) * size * 0.6
        wh = torch.rand(n, 2, generator=g) * size * 0.3 + 6
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, (xy + wh).clamp(max=size)], -1),
            labels=torch.randint(0, 5, (n, ), generator=g))
        samples.append(sample)
    return inputs, samples


class SelfAttnMasks:
    """Records the ``attn_mask`` every decoder self-attention receives."""

    def __init__(self, decoder):
        self.calls = []  # (layer index, num queries, mask)
        self.handles = [
            layer.self_attn.register_forward_pre_hook(
                self._hook(i), with_kwargs=True)
            for i, layer in enumerate(decoder.layers)
        ]

    def _hook(self, index):

        def hook(module, args, kwargs):
            query = kwargs['query']
            mask = kwargs.get('attn_mask')
            self.calls.append(
                (index, query.shape[1],
                 None if mask is None else mask.detach().clone()))

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


# --------------------------------------------------------------------------
# official math
# --------------------------------------------------------------------------
def test_position_relation_embedding_matches_official():
    from vitdense.ops import (PositionRelationEmbedding, box_relation_bias,
                              box_relation_bias_pytorch)
    data = _load('position_relation_embedding.pth')
    embed = PositionRelationEmbedding(
        embed_dim=16, num_heads=8, temperature=10000., scale=100.)
    embed.load_state_dict(data['state_dict'], strict=True)
    with torch.no_grad():
        out = embed(data['src_boxes'], data['tgt_boxes'])
    assert out.shape == data['relation'].shape == (2, 8, 7, 9)
    torch.testing.assert_close(out, data['relation'], atol=1e-5, rtol=0)
    weight, bias = data['state_dict']['pos_proj.0.weight'], data[
        'state_dict']['pos_proj.0.bias']
    for fn in (box_relation_bias, box_relation_bias_pytorch):
        out = fn(data['src_boxes'], data['tgt_boxes'], weight, bias)
        torch.testing.assert_close(out, data['relation'], atol=1e-5, rtol=0)


def test_iou_varifocal_loss_matches_official():
    init_default_scope('mmdet')
    from vitdense.models.dense_heads.relation_detr_head import \
        IoUVarifocalLoss
    data = _load('vari_sigmoid_focal_loss.pth')
    loss = IoUVarifocalLoss(alpha=0.25, gamma=2.0)(
        data['logits'].flatten(0, 1),
        (data['labels'].flatten(), data['scores'].flatten()),
        weight=torch.ones(12),
        avg_factor=data['num_boxes'])
    torch.testing.assert_close(loss, data['loss'], atol=1e-6, rtol=1e-6)


def test_relation_detr_matches_official_model():
    """Converted official weights load strictly; every decoder layer's logits
    and boxes (and the encoder top-k) match the official model in eval."""
    from vitdense.models.detectors.relation_detr import \
        convert_relation_detr_official
    data = _load('relation_detr_tiny_official.pth')
    model = build(tiny_model_cfg()).eval()
    state_dict = convert_relation_detr_official(data['state_dict'])
    own_backbone = {
        k: v
        for k, v in model.state_dict().items() if k.startswith('backbone.')
    }
    assert not set(state_dict) & set(own_backbone)
    model.load_state_dict({**state_dict, **own_backbone}, strict=True)

    _, samples = make_batch(num_gts=(0, 0), size=data['img_shape'][0])
    with torch.no_grad():
        img_feats = model.neck(data['backbone_feats'])
        head_inputs = model.forward_transformer(img_feats, samples)
        cls_scores, bbox_preds = model.bbox_head(head_inputs['hidden_states'],
                                                 head_inputs['references'])
    assert cls_scores.shape == data['cls_scores'].shape == (3, 2, 20, 5)
    torch.testing.assert_close(
        cls_scores, data['cls_scores'], atol=1e-4, rtol=0)
    torch.testing.assert_close(
        bbox_preds, data['bbox_preds'], atol=1e-4, rtol=0)


def test_converter_tool_output_loads_strictly(tmp_path, repo_root):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'relation_detr2vitdense',
        osp.join(repo_root, 'tools', 'model_converters',
                 'relation_detr2vitdense.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    data = _load('relation_detr_tiny_official.pth')
    src, dst = str(tmp_path / 'official.pth'), str(tmp_path / 'out.pth')
    torch.save({'model': data['state_dict']}, src)
    tool.convert(src, dst)
    state_dict = torch.load(dst, weights_only=False)['state_dict']
    model = build(tiny_model_cfg())
    state_dict.update({
        k: v
        for k, v in model.state_dict().items() if k.startswith('backbone.')
    })
    model.load_state_dict(state_dict, strict=True)


# --------------------------------------------------------------------------
# denoising / hybrid / inference masks
# --------------------------------------------------------------------------
def test_matching_queries_never_see_denoising_queries():
    model = build(tiny_model_cfg()).train()
    inputs, samples = make_batch(num_gts=(2, 3))
    rec = SelfAttnMasks(model.decoder)
    with torch.no_grad():
        model.loss(inputs, samples)
    rec.remove()
    main = [c for c in rec.calls if c[1] != model.num_hybrid_queries]
    assert [c[0] for c in main] == [0, 1, 2]
    num_total = main[0][1]
    num_dn = num_total - model.num_queries
    assert num_dn == 3 * 2 * (10 // 3)  # max_gt x (pos, neg) x groups
    dn_mask = main[0][2]
    assert dn_mask.dtype == torch.bool and dn_mask.shape == (num_total, ) * 2
    assert dn_mask[num_dn:, :num_dn].all()
    for _, _, bias in main[1:]:
        # (B * heads, N, N) float bias: -inf exactly where DN is blocked
        assert bias.dtype == torch.float32
        assert bias.shape == (2 * 8, num_total, num_total)
        assert torch.isneginf(bias[:, num_dn:, :num_dn]).all()
        assert torch.equal(torch.isneginf(bias), dn_mask.expand_as(bias))
        assert torch.isfinite(bias[:, num_dn:, num_dn:]).all()
        assert (bias[:, num_dn:, num_dn:] >= 0).all()  # ReLU output


def test_hybrid_queries_never_get_the_relation_bias():
    model = build(tiny_model_cfg()).train()
    inputs, samples = make_batch(num_gts=(2, 3))
    rec = SelfAttnMasks(model.decoder)
    with torch.no_grad():
        losses = model.loss(inputs, samples)
    rec.remove()
    hybrid = [c for c in rec.calls if c[1] == model.num_hybrid_queries]
    assert [c[0] for c in hybrid] == [0, 1, 2]
    assert all(mask is None for _, _, mask in hybrid)
    assert 'hybrid_loss_cls' in losses and 'hybrid_enc_loss_cls' in losses
    assert 'hybrid_d0.loss_bbox' in losses


def test_inference_runs_only_the_matching_queries():
    model = build(tiny_model_cfg()).eval()
    inputs, samples = make_batch(num_gts=(2, 3))
    rec = SelfAttnMasks(model.decoder)
    with torch.no_grad():
        results = model.predict(inputs, samples)
    rec.remove()
    assert [(i, n) for i, n, _ in rec.calls] == [(0, 20), (1, 20), (2, 20)]
    assert rec.calls[0][2] is None  # no denoising mask
    for _, _, bias in rec.calls[1:]:
        assert bias.shape == (2 * 8, 20, 20) and torch.isfinite(bias).all()
    assert len(results) == 2 and len(results[0].pred_instances) == 20


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------
def test_a_few_training_iterations_lower_the_loss():
    torch.manual_seed(0)
    model = build(tiny_model_cfg()).train()
    inputs, samples = make_batch(num_gts=(2, 3), seed=3)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(8):
        torch.manual_seed(1)  # same denoising noise every step
        loss, _ = model.parse_losses(model.loss(inputs, samples))
        optim.zero_grad()
        loss.backward()
        optim.step()
        history.append(loss.item())
    assert history[-1] < 0.99 * history[0], history
    assert sum(history[-3:]) < sum(history[:3]), history


@pytest.mark.parametrize('num_gts', [(0, 3), (0, 0)])
def test_images_without_ground_truth_train(num_gts):
    model = build(tiny_model_cfg()).train()
    inputs, samples = make_batch(num_gts=num_gts)
    losses = model.loss(inputs, samples)
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.query_embedding.weight.grad is not None
    assert model.hybrid_query_embedding.weight.grad is not None


# --------------------------------------------------------------------------
# DINO + relation
# --------------------------------------------------------------------------
def dino_cfg(relation: bool) -> dict:
    cfg = tiny_model_cfg(type='RelationDINO')
    del cfg['num_hybrid_queries']
    cfg['decoder'] = {**cfg['decoder'], 'relation': relation}
    cfg['bbox_head'] = {
        **cfg['bbox_head'], 'type': 'DINOHead',
        'loss_cls': dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                         alpha=0.25, loss_weight=1.0)
    }
    del cfg['bbox_head']['hybrid_assign']
    return cfg


@pytest.mark.parametrize('relation', [True, False])
def test_dino_plus_relation_switch(relation):
    from mmdet.models.detectors import DINO
    model = build(dino_cfg(relation)).train()
    assert isinstance(model, DINO)
    assert not hasattr(model.decoder, 'query_scale')
    assert hasattr(model.decoder,
                   'position_relation_embedding') == relation
    inputs, samples = make_batch(num_gts=(2, 3))
    rec = SelfAttnMasks(model.decoder)
    loss, _ = model.parse_losses(model.loss(inputs, samples))
    rec.remove()
    loss.backward()
    assert torch.isfinite(loss)
    later = [mask for i, _, mask in rec.calls if i > 0]
    if relation:
        assert all(m.dtype == torch.float32 for m in later)
        assert model.decoder.position_relation_embedding.pos_proj[
            0].weight.grad is not None
    else:
        assert all(m.dtype == torch.bool for m in later)  # DN mask only
