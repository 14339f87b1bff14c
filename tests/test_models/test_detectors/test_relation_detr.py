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
    from vitdense.models.losses import IoUVarifocalLoss
    data = _load('vari_sigmoid_focal_loss.pth')
    loss = IoUVarifocalLoss(alpha=0.25, gamma=2.0)(
        data['logits'].flatten(0, 1),
        (data['labels'].flatten(), data['scores'].flatten()),
        weight=torch.ones(12),
        avg_factor=data['num_boxes'])
    torch.testing.assert_close(loss, data['loss'], atol=1e-6, rtol=1e-6)


def official_checkpoint(data: dict) -> dict:
    """The official model's whole state dict (backbone included)."""
    return {**data['state_dict'], **data['backbone_state_dict']}


def assert_matches_official(cls_scores, bbox_preds, results, data) -> None:
    """Every decoder layer's logits and boxes and the detections (in
    original-image pixels) equal the fixture's official outputs to 1e-4."""
    assert cls_scores.shape == data['cls_scores'].shape == (3, 2, 20, 5)
    torch.testing.assert_close(
        cls_scores, data['cls_scores'], atol=1e-4, rtol=0)
    torch.testing.assert_close(
        bbox_preds, data['bbox_preds'], atol=1e-4, rtol=0)
    for result, official, image in zip(results, data['detections'],
                                       data['images']):
        pred = result.pred_instances
        h, w = image.shape[1:]
        boxes = official['boxes'].clone()  # mmdet clips to the image
        boxes[:, 0::2].clamp_(0, w)
        boxes[:, 1::2].clamp_(0, h)
        assert torch.equal(pred.labels, official['labels'])
        torch.testing.assert_close(
            pred.scores, official['scores'], atol=1e-4, rtol=0)
        torch.testing.assert_close(
            pred.bboxes, boxes, atol=1e-4 * max(h, w), rtol=0)


def test_relation_detr_matches_official_model(repo_root):
    """Converted official weights load strictly into the shipped COCO config
    (at the fixture's size); raw images of odd, different sizes through the
    config's own data preprocessor give the official outputs."""
    from vitdense.converters.relation_detr import \
        convert_relation_detr_official
    data = _load('relation_detr_tiny_official.pth')
    assert_matches_official_outputs(
        convert_relation_detr_official(official_checkpoint(data)), data,
        repo_root)


def coco_config_model(repo_root: str, settings: dict):
    """``relation-detr_r50_8xb2-12e_coco.py`` with only the sizes of the
    fixture changed (ResNet-18 at 1/8 width, 32 wide, 2 + 3 layers, ...); the
    data preprocessor and everything else are the config's."""
    from mmengine.config import Config
    cfg = Config.fromfile(
        osp.join(repo_root, 'configs', 'relation_detr',
                 'relation-detr_r50_8xb2-12e_coco.py'))
    embed = dict(embed_dims=settings['embed_dim'])
    ffn = dict(embed, feedforward_channels=settings['d_ffn'])
    cfg.merge_from_dict(dict(model=dict(
        num_queries=settings['num_queries'],
        num_hybrid_queries=settings['hybrid_num_proposals'],
        backbone=dict(depth=18, base_channels=8, init_cfg=None),
        neck=dict(in_channels=settings['in_channels'],
                  out_channels=settings['embed_dim']),
        encoder=dict(num_layers=settings['enc_layers'],
                     layer_cfg=dict(self_attn_cfg=embed, ffn_cfg=ffn)),
        decoder=dict(num_layers=settings['dec_layers'],
                     layer_cfg=dict(self_attn_cfg=embed, cross_attn_cfg=embed,
                                    ffn_cfg=ffn)),
        positional_encoding=dict(num_feats=settings['embed_dim'] // 2),
        bbox_head=dict(num_classes=settings['num_classes'], **embed),
        dn_cfg=dict(group_cfg=dict(num_dn_queries=settings['denoising_nums'])),
        test_cfg=dict(
            max_per_img=settings['select_box_nums_for_evaluation']))))
    return build(cfg.model.to_dict())


def preprocess_raw_images(model, images: list) -> dict:
    """RGB uint8 (3, H, W) images as the test pipeline hands them over (BGR,
    as ``LoadImageFromFile`` reads them, no resize) through the model's own
    data preprocessor."""
    from mmdet.structures import DetDataSample
    samples = [
        DetDataSample(metainfo=dict(
            img_shape=tuple(img.shape[1:]), ori_shape=tuple(img.shape[1:]),
            scale_factor=(1., 1.))) for img in images
    ]
    return model.data_preprocessor(
        dict(inputs=[img.flip(0) for img in images], data_samples=samples),
        False)


def assert_matches_official_outputs(state_dict: dict, data: dict,
                                    repo_root: str) -> None:
    """Load converted fixture weights strictly into the COCO config's model
    and compare every decoder layer's logits and boxes, and the detections,
    with the official model's on the fixture's raw images."""
    model = coco_config_model(repo_root, data['settings']).eval()
    model.load_state_dict(state_dict, strict=True)
    batch = preprocess_raw_images(model, data['images'])
    with torch.no_grad():
        img_feats = model.extract_feat(batch['inputs'])
        head_inputs = model.forward_transformer(img_feats,
                                                batch['data_samples'])
        cls_scores, bbox_preds = model.bbox_head(head_inputs['hidden_states'],
                                                 head_inputs['references'])
        results = model.predict(batch['inputs'], batch['data_samples'])
    assert_matches_official(cls_scores, bbox_preds, results, data)


def test_converter_tool_output_loads_strictly(tmp_path, repo_root):
    tool = _converter_tool(repo_root)
    data = _load('relation_detr_tiny_official.pth')
    src, dst = str(tmp_path / 'official.pth'), str(tmp_path / 'out.pth')
    torch.save({'model': data['state_dict']}, src)
    tool.convert(src, dst)
    state_dict = torch.load(dst, weights_only=True)['state_dict']
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


# --------------------------------------------------------------------------
# HF transformers checkpoints
# --------------------------------------------------------------------------
# official -> HF transformers key renames, each ``re.sub`` applied to every
# key in this order, as the port's own conversion does. Read from
# huggingface/transformers PR #34900 (src/transformers/models/relation_detr/):
# convert_relation_detr_weights_to_hf.py @9ed57d27cb95
# (ORIGINAL_TO_CONVERTED_KEY_MAPPING_EXCEPT_BACKBONE, the "resnet" backbone
# entry, split_q_k_v) and the module names of modeling_relation_detr.py
# @74a14c3025f3 (RelationDetrModel.encoder_output(_norm), target_embed, ...).
OFFICIAL_TO_HF = (
    (r'^transformer\.encoder\.layers\.(\d+)\.norm1\.',
     r'transformer.encoder.layers.\1.self_attn_layer_norm.'),
    (r'^transformer\.encoder\.layers\.(\d+)\.norm2\.',
     r'transformer.encoder.layers.\1.final_layer_norm.'),
    (r'^transformer\.(encoder|decoder)\.layers\.(\d+)\.linear(\d+)\.',
     r'transformer.\1.layers.\2.fc\3.'),
    (r'^transformer\.decoder\.layers\.(\d+)\.cross_attn\.',
     r'transformer.decoder.layers.\1.encoder_attn.'),
    (r'^transformer\.decoder\.layers\.(\d+)\.norm1\.',
     r'transformer.decoder.layers.\1.encoder_attn_layer_norm.'),
    (r'^transformer\.decoder\.layers\.(\d+)\.norm2\.',
     r'transformer.decoder.layers.\1.self_attn_layer_norm.'),
    (r'^transformer\.decoder\.layers\.(\d+)\.norm3\.',
     r'transformer.decoder.layers.\1.final_layer_norm.'),
    (r'^transformer\.tgt_embed\.', 'transformer.target_embed.'),
    (r'^transformer\.hybrid_tgt_embed\.', 'transformer.hybrid_target_embed.'),
    (r'^transformer\.level_embeds$', 'transformer.level_embed'),
    (r'^transformer\.enc_output\.', 'transformer.encoder_output.'),
    (r'^transformer\.enc_output_norm\.', 'transformer.encoder_output_norm.'),
    (r'^transformer\.', 'model.'),
    (r'^neck\.', 'model.neck.'),
    (r'^backbone\.', 'model.backbone.model._backbone.'),  # timm ResNet
)
# mmdet/official ResNet -> transformers' ResNetBackbone under
# RelationDetrConvEncoder.model (src/transformers/models/resnet/
# modeling_resnet.py @00cbbe53b2f7: ResNetEmbeddings.embedder,
# ResNetEncoder.stages[i].layers[j].{shortcut, layer[k]}, each a
# {convolution, normalization} pair).
MMDET_RESNET_TO_HF_RESNET = (
    (r'^conv1\.', 'embedder.embedder.convolution.'),
    (r'^bn1\.', 'embedder.embedder.normalization.'),
    (r'^layer(\d)\.(\d+)\.conv(\d)\.', lambda m: 'encoder.stages.'
     f'{int(m[1]) - 1}.layers.{m[2]}.layer.{int(m[3]) - 1}.convolution.'),
    (r'^layer(\d)\.(\d+)\.bn(\d)\.', lambda m: 'encoder.stages.'
     f'{int(m[1]) - 1}.layers.{m[2]}.layer.{int(m[3]) - 1}.normalization.'),
    (r'^layer(\d)\.(\d+)\.downsample\.0\.',
     lambda m: f'encoder.stages.{int(m[1]) - 1}.layers.{m[2]}.shortcut.'
     'convolution.'),
    (r'^layer(\d)\.(\d+)\.downsample\.1\.',
     lambda m: f'encoder.stages.{int(m[1]) - 1}.layers.{m[2]}.shortcut.'
     'normalization.'),
)


def official_to_hf(state_dict: dict) -> dict:
    """The HF transformers state dict of an official one (without the
    ``_classes_`` buffer the port pops)."""
    import re
    out = {}
    for key, value in state_dict.items():
        for pattern, repl in OFFICIAL_TO_HF:
            key = re.sub(pattern, repl, key)
        if key.endswith('.self_attn.in_proj_weight') or key.endswith(
                '.self_attn.in_proj_bias'):
            head, param = key.rsplit('.in_proj_', 1)
            for name, part in zip('qkv', value.chunk(3)):
                out[f'{head}.{name}_proj.{param}'] = part
        else:
            out[key] = value
    return out


def resnet_to_hf(state_dict: dict, flavour: str) -> dict:
    """An mmdet ``ResNet`` state dict as the backbone of the HF model: timm's
    (the same names) or transformers' ResNet; BN frozen (no
    ``num_batches_tracked``) as ``replace_batch_norm`` makes it."""
    import re
    out = {}
    for key, value in state_dict.items():
        if key.endswith('num_batches_tracked'):
            continue
        if flavour == 'timm':
            out[f'model.backbone.model._backbone.{key}'] = value
            continue
        for pattern, repl in MMDET_RESNET_TO_HF_RESNET:
            if re.match(pattern, key):
                key = re.sub(pattern, repl, key)
                break
        else:
            raise AssertionError(f'no HF ResNet name for {key}')
        out[f'model.backbone.model.{key}'] = value
    return out


def hf_fixture_state_dict() -> dict:
    data = _load('relation_detr_tiny_official.pth')
    return official_to_hf(data['state_dict'])


def test_hf_checkpoint_matches_official_model(repo_root):
    """HF-layout weights of the official fixture convert to exactly the
    official conversion, load strictly and reproduce the official outputs."""
    from vitdense.converters.relation_detr import (
        convert_relation_detr_hf, convert_relation_detr_official)
    data = _load('relation_detr_tiny_official.pth')
    hf = {
        **hf_fixture_state_dict(),
        **official_to_hf(data['backbone_state_dict'])
    }
    assert 'model.decoder.layers.0.self_attn.q_proj.weight' in hf
    assert not any(k.startswith('transformer.') for k in hf)
    state_dict = convert_relation_detr_hf(hf)
    reference = convert_relation_detr_official(official_checkpoint(data))
    assert set(state_dict) == set(reference)
    for key, value in reference.items():
        assert torch.equal(state_dict[key], value), key
    assert_matches_official_outputs(state_dict, data, repo_root)


@pytest.mark.parametrize('flavour', ['timm', 'transformers'])
@pytest.mark.parametrize('depth', [18, 50])
def test_hf_resnet_backbones_map_to_mmdet_resnet(flavour, depth):
    from mmdet.models.backbones import ResNet

    from vitdense.converters.relation_detr import \
        convert_relation_detr_hf
    resnet = ResNet(depth=depth, base_channels=8)
    hf = {**hf_fixture_state_dict(),
          **resnet_to_hf(resnet.state_dict(), flavour)}
    state_dict = convert_relation_detr_hf(hf)
    backbone = {
        k[len('backbone.'):]: v
        for k, v in state_dict.items() if k.startswith('backbone.')
    }
    expected = {
        k: v
        for k, v in resnet.state_dict().items()
        if not k.endswith('num_batches_tracked')
    }
    assert set(backbone) == set(expected)
    for key, value in expected.items():
        assert torch.equal(backbone[key], value), key
    ResNet(depth=depth, base_channels=8).load_state_dict(backbone, strict=True)


def test_hf_checkpoint_with_backbone_loads_strictly_into_the_model():
    from vitdense.converters.relation_detr import \
        convert_relation_detr_hf
    model = build(tiny_model_cfg())
    backbone = {
        k[len('backbone.'):]: v
        for k, v in model.state_dict().items() if k.startswith('backbone.')
    }
    hf = {**hf_fixture_state_dict(),
          **resnet_to_hf(backbone, 'transformers')}
    model.load_state_dict(convert_relation_detr_hf(hf), strict=True)


@pytest.mark.parametrize('key', [
    'model.backbone.model._backbone.layers_0.blocks.0.attn.qkv.weight',
    'model.backbone.norms.0.weight',
    'model.decoder.layers.0.self_attn.qkv.weight',
    'model.some_new_module.weight',
])
def test_hf_converter_names_unmapped_keys(key):
    from vitdense.converters.relation_detr import \
        convert_relation_detr_hf
    hf = hf_fixture_state_dict()
    hf[key] = torch.zeros(1)
    with pytest.raises(KeyError, match=key.replace('.', r'\.')):
        convert_relation_detr_hf(hf)


def test_hf_converter_needs_all_of_q_k_v():
    from vitdense.converters.relation_detr import \
        convert_relation_detr_hf
    hf = hf_fixture_state_dict()
    del hf['model.decoder.layers.1.self_attn.v_proj.bias']
    with pytest.raises(KeyError, match='v_proj.bias'):
        convert_relation_detr_hf(hf)


def test_layout_detection():
    from vitdense.converters.relation_detr import (
        convert_relation_detr_official, detect_relation_detr_layout)
    official = _load('relation_detr_tiny_official.pth')['state_dict']
    assert detect_relation_detr_layout(official) == 'official'
    assert detect_relation_detr_layout(hf_fixture_state_dict()) == 'hf'
    with pytest.raises(ValueError, match='neither'):
        detect_relation_detr_layout(convert_relation_detr_official(official))
    with pytest.raises(ValueError, match='both'):
        detect_relation_detr_layout({**official, **hf_fixture_state_dict()})


def _converter_tool(repo_root):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'relation_detr2vitdense',
        osp.join(repo_root, 'tools', 'model_converters',
                 'relation_detr2vitdense.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_converter_tool_reads_hf_model_folder(tmp_path, repo_root):
    """An HF folder with ``pytorch_model.bin`` (auto layout) gives the same
    weights as the official file."""
    tool = _converter_tool(repo_root)
    official = _load('relation_detr_tiny_official.pth')['state_dict']
    folder = tmp_path / 'relation-detr-hf'
    folder.mkdir()
    torch.save(hf_fixture_state_dict(), str(folder / 'pytorch_model.bin'))
    torch.save(official, str(tmp_path / 'official.pth'))
    from_hf = tool.convert(str(folder), str(tmp_path / 'a.pth'))
    from_official = tool.convert(
        str(tmp_path / 'official.pth'), str(tmp_path / 'b.pth'),
        layout='official')
    assert set(from_hf) == set(from_official)
    saved = torch.load(str(tmp_path / 'a.pth'), weights_only=True)
    for key, value in from_official.items():
        assert torch.equal(saved['state_dict'][key], value), key
    with pytest.raises(KeyError, match='transformer'):
        tool.convert(
            str(tmp_path / 'official.pth'), str(tmp_path / 'c.pth'),
            layout='hf')


def test_converter_tool_refuses_pickled_objects(tmp_path, repo_root):
    import argparse
    tool = _converter_tool(repo_root)
    src = str(tmp_path / 'training_checkpoint.pth')
    torch.save({
        'model': _load('relation_detr_tiny_official.pth')['state_dict'],
        'args': argparse.Namespace(lr=1e-4)
    }, src)
    with pytest.raises(RuntimeError, match='pickled Python objects'):
        tool.convert(src, str(tmp_path / 'out.pth'))


def test_converter_tool_reads_safetensors_or_says_what_is_missing(
        tmp_path, repo_root):
    import importlib.util
    tool = _converter_tool(repo_root)
    src = str(tmp_path / 'model.safetensors')
    hf = hf_fixture_state_dict()
    if importlib.util.find_spec('safetensors') is None:
        open(src, 'wb').close()
        with pytest.raises(ImportError, match='pip install safetensors'):
            tool.convert(src, str(tmp_path / 'out.pth'))
    else:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in hf.items()}, src)
        state_dict = tool.convert(src, str(tmp_path / 'out.pth'))
        model = build(tiny_model_cfg())
        state_dict.update({
            k: v
            for k, v in model.state_dict().items() if k.startswith('backbone.')
        })
        model.load_state_dict(state_dict, strict=True)


# --------------------------------------------------------------------------
# configs of the vitdense backbones
# --------------------------------------------------------------------------
@pytest.mark.parametrize('name, strides', [
    ('relation-detr_rmt-t_8xb2-12e_coco.py', (8, 16, 32, 64)),
    ('relation-detr_crossformer-s_8xb2-12e_coco.py', (8, 16, 32, 64)),
    ('relation-detr_vit-comer-s_8xb2-12e_coco.py', (4, 8, 16, 32, 64)),
])
def test_backbone_configs_build_and_predict(repo_root, name, strides):
    """The real architectures without pretrained weights, one 150x210 image
    (not a multiple of 32: padded to 160x224 as the official model does). At
    strides 8-64 it has 747 memory tokens, fewer than the 900 queries of the
    configs: the selection is capped, as in the official code."""
    from mmdet.structures import DetDataSample
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(repo_root, 'configs', 'relation_detr',
                                   name))
    cfg.model.backbone.pop('init_cfg')
    torch.manual_seed(0)
    model = build(cfg.model.to_dict()).eval()
    assert model.num_feature_levels == len(strides)
    h, w = 150, 210
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    sample = DetDataSample(
        metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                      scale_factor=(1., 1.)))
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(inputs=[image], data_samples=[sample]), False)
        feats = model.extract_feat(data['inputs'])
        results = model.predict(data['inputs'], data['data_samples'])
    ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
    assert data['inputs'].shape[-2:] == (ph, pw) == (160, 224)
    assert [tuple(f.shape) for f in feats] == [
        (1, 256, -(-ph // s), -(-pw // s)) for s in strides
    ]
    pred = results[0].pred_instances
    assert pred.bboxes.shape == (300, 4) and pred.scores.shape == (300, )
    assert torch.isfinite(pred.bboxes).all()
    assert ((pred.labels >= 0) & (pred.labels < 80)).all()
