"""Tests of ``vitdense.models.backbones.vit_comer``.

Parity fixtures (``tests/data/vit_comer/official_{det,seg}_tiny.pth``) were
made by running the official ViT-CoMer once on CPU, outside this repository:
Traffic-X/ViT-CoMer at b57f386, ``detection/mmdet_custom/models/backbones``
(``det``) and ``segmentation/mmseg_custom/models/backbones`` (``seg``), with
timm/mmcv-1.x/mmdet-2.x symbols stubbed and the CUDA MSDA op replaced by the
repository's own ``ms_deform_attn_core_pytorch``.  Settings: img_size =
pretrain_size = 64, patch 16, embed_dim 24, depth 4, num_heads 2,
conv_inplane 8, n_points 2, deform_num_heads 4, cffn_ratio 0.25,
interaction_indexes [[0,0],[1,1],[2,2],[3,3]], drop_path 0, eval mode;
``det``: deform_ratio 0.5, use_CTI_toV/toC and cnn_feature_interaction
[True]*4, window_attn [T,F,T,F] with window 4; ``seg``: deform_ratio 1.0,
dim_ratio 2.0, no window attention.  All parameters and BN statistics were
drawn at random (seed 0), the input is ``randn(1, 3, 64, 96)`` (seed 1).
Each file holds the official state dict (``backbone.`` keys), the input and
the four official outputs.

``official_{det,seg}_keys.json``: key -> shape of the full-size official
models (T/S/B/L as in the official configs; L on the plain ViT because the
official BEiT variant is not in the repository), for strict layout checks.
"""
import json
import os.path as osp

import pytest
import torch

from vitdense.converters.vit_comer import (convert_vit_comer,
                                           convert_vit_to_vit_comer,
                                           infer_vit_comer_settings,
                                           load_vit_comer_state_dict)
from vitdense.models.backbones.vit_comer import ViTCoMer

DATA = osp.join(osp.dirname(__file__), '..', '..', 'data', 'vit_comer')
TINY_ARCH = dict(embed_dims=24, depth=4, num_heads=2, deform_num_heads=4,
                 deform_ratio=1.0,
                 interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]])
FLAVOUR = dict(det='detection', seg='segmentation')


def tiny(flavour='detection', **kwargs):
    cfg = dict(arch=TINY_ARCH, flavour=flavour, pretrain_size=64,
               conv_inplane=8, n_points=2)
    cfg.update(kwargs)
    return ViTCoMer(**cfg)


def official_tiny(name, **kwargs):
    if name == 'det':
        return tiny('detection', arch=dict(TINY_ARCH, deform_ratio=0.5),
                    window_attn=[True, False, True, False], window_size=4,
                    **kwargs)
    return tiny('segmentation', mrfp_ratio=2.0, **kwargs)


@pytest.mark.parametrize('name', ['det', 'seg'])
def test_vit_comer_matches_official_model(name):
    data = torch.load(osp.join(DATA, f'official_{name}_tiny.pth'))
    model = official_tiny(name).eval()
    state_dict = convert_vit_comer(data['state_dict'])
    model.load_state_dict(state_dict, strict=True)
    with torch.no_grad():
        outs = model(data['input'])
    assert len(outs) == len(data['outputs']) == 4
    for out, ref in zip(outs, data['outputs']):
        assert out.shape == ref.shape
        assert (out - ref).abs().max() <= 1e-4


@pytest.mark.parametrize('name', ['det', 'seg'])
def test_vit_comer_infers_flavour_from_official_weights(name):
    data = torch.load(osp.join(DATA, f'official_{name}_tiny.pth'))
    settings = infer_vit_comer_settings(convert_vit_comer(data['state_dict']))
    assert settings['flavour'] == FLAVOUR[name]
    assert settings['pretrain_size'] == 64
    assert settings.get('mrfp_ratio') == (None if name == 'det' else 2.0)


@pytest.mark.parametrize('name', ['det', 'seg'])
@pytest.mark.parametrize('arch', ['t', 's', 'b', 'l'])
def test_vit_comer_variant_loads_official_key_layout(name, arch):
    table = json.load(open(osp.join(DATA, f'official_{name}_keys.json')))
    official = table[arch]
    shapes = {k[len('backbone.'):]: v for k, v in official['keys'].items()}
    pretrain_size = official['settings'].get('pretrain_size', 224)
    with torch.device('meta'):
        model = ViTCoMer(arch=arch, flavour=FLAVOUR[name],
                         pretrain_size=pretrain_size)
    state_dict = {
        k: torch.empty(shape, device='meta')
        for k, shape in shapes.items()
    }
    model.load_state_dict(state_dict, strict=True, assign=True)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == shapes


@pytest.mark.parametrize('flavour,hw', [('detection', (224, 224)),
                                        ('detection', (225, 319)),
                                        ('detection', (97, 131)),
                                        ('segmentation', (97, 131))])
def test_vit_comer_accepts_any_input_size(flavour, hw):
    model = tiny(flavour, window_attn=True, window_size=3).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *hw))
    for out, stride in zip(outs, (4, 8, 16, 32)):
        assert out.shape == (1, 24, -(-hw[0] // stride), -(-hw[1] // stride))


def test_vit_comer_odd_input_equals_zero_padded_input_cropped():
    model = tiny().eval()
    x = torch.randn(1, 3, 63, 95)
    with torch.no_grad():
        outs = model(x)
        padded = model(torch.nn.functional.pad(x, (0, 1, 0, 1)))
    for out, ref in zip(outs, padded):
        h, w = out.shape[-2:]
        assert torch.allclose(out, ref[..., :h, :w], atol=1e-6)


@pytest.mark.parametrize('name', ['det', 'seg'])
def test_vit_comer_out_indices_drop_the_unused_output_branch(name, tmp_path):
    """Without level 0 neither ``spm.fc1`` nor ``up`` is built (no unused
    parameters); an official checkpoint still loads strictly through
    ``init_cfg`` (their weights and the unused norms are dropped) and the
    returned levels equal the full model's."""
    data = torch.load(osp.join(DATA, f'official_{name}_tiny.pth'))
    path = str(tmp_path / 'official.pth')
    torch.save({'state_dict': data['state_dict']}, path)
    model = official_tiny(
        name, out_indices=(1, 3),
        init_cfg=dict(type='Pretrained', checkpoint=path))
    assert model.up is None and model.spm.fc1 is None
    assert not any(k.startswith(('norm1.', 'norm3.'))
                   for k in model.state_dict())
    model.init_weights()
    with torch.no_grad():
        outs = model.eval()(data['input'])
    assert len(outs) == 2
    for out, ref in zip(outs, (data['outputs'][1], data['outputs'][3])):
        assert (out - ref).abs().max() <= 1e-4


@pytest.mark.parametrize('flavour', ['detection', 'segmentation'])
def test_vit_comer_gradients_reach_every_parameter(flavour):
    model = tiny(flavour, window_attn=[True, False, True, False],
                 window_size=3, init_values=0.1)
    model.init_weights()
    # the official init zeroes the offset/weight projections of MSDA, which
    # blocks the gradient to the query norms at step 0; move off that point
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.train()
    outs = model(torch.randn(2, 3, 64, 64))
    sum(o.square().mean() for o in outs).backward()
    no_grad = [n for n, p in model.named_parameters()
               if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def test_vit_comer_syncbn_falls_back_to_bn_on_cpu():
    model = tiny(norm_cfg=dict(type='SyncBN'))
    if not torch.cuda.is_available():
        assert not any(
            isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
        model.train()
        model(torch.randn(2, 3, 64, 64))  # no "expected input on GPU"


def test_vit_comer_converter_is_strict():
    data = torch.load(osp.join(DATA, 'official_seg_tiny.pth'))
    state_dict = convert_vit_comer(data)
    load_vit_comer_state_dict(official_tiny('seg'), state_dict)
    state_dict.pop('interactions.1.mrfp.fc1.weight')
    with pytest.raises(RuntimeError, match='Missing key'):
        load_vit_comer_state_dict(official_tiny('seg'), state_dict)
    det = torch.load(osp.join(DATA, 'official_det_tiny.pth'))
    with pytest.raises(RuntimeError, match='size mismatch'):
        load_vit_comer_state_dict(official_tiny('seg'), det)


def test_vit_comer_converter_tool_plain_vit_mode(tmp_path):
    from tools.model_converters.vit_comer2vitdense import convert
    src, dst = str(tmp_path / 'deit_t.pth'), str(tmp_path / 'out.pth')
    torch.save({'model': _plain_vit(dims=192, depth=12)}, src)
    state_dict = convert(src, dst, vit=True, arch='t', pretrain_size=224)
    assert torch.load(dst)['state_dict'].keys() == state_dict.keys()
    with pytest.raises(RuntimeError, match='shape mismatch'):
        convert(src, dst, vit=True, arch='s')


def test_vit_comer_pretrained_init_cfg_raises_on_unmatched_keys(tmp_path):
    path = str(tmp_path / 'bad.pth')
    data = torch.load(osp.join(DATA, 'official_det_tiny.pth'))
    bad = {'encoder.' + k: v for k, v in data['state_dict'].items()}
    torch.save({'state_dict': bad}, path)
    model = tiny(init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(RuntimeError):
        model.init_weights()
    good = str(tmp_path / 'good.pth')
    torch.save({'state_dict': data['state_dict']}, good)
    model = official_tiny('det')
    model.init_cfg = dict(type='Pretrained', checkpoint=good)
    model.init_weights()
    assert torch.equal(model.level_embed,
                       data['state_dict']['backbone.level_embed'])


def _plain_vit(dims=24, depth=4, patch=16, grid=14, kind='deit'):
    sd = {
        'cls_token': torch.randn(1, 1, dims),
        'pos_embed': torch.randn(1, grid * grid + 1, dims),
        'patch_embed.proj.weight': torch.randn(dims, 3, patch, patch),
        'patch_embed.proj.bias': torch.randn(dims),
        'norm.weight': torch.ones(dims), 'norm.bias': torch.zeros(dims),
        'head.weight': torch.randn(10, dims), 'head.bias': torch.zeros(10),
    }
    for i in range(depth):
        p = f'blocks.{i}.'
        for n in ('norm1', 'norm2'):
            sd[p + n + '.weight'] = torch.randn(dims)
            sd[p + n + '.bias'] = torch.randn(dims)
        sd[p + 'attn.qkv.weight'] = torch.randn(3 * dims, dims)
        sd[p + 'attn.proj.weight'] = torch.randn(dims, dims)
        sd[p + 'attn.proj.bias'] = torch.randn(dims)
        sd[p + 'mlp.fc1.weight'] = torch.randn(4 * dims, dims)
        sd[p + 'mlp.fc1.bias'] = torch.randn(4 * dims)
        sd[p + 'mlp.fc2.weight'] = torch.randn(dims, 4 * dims)
        sd[p + 'mlp.fc2.bias'] = torch.randn(dims)
        if kind == 'beit':
            sd[p + 'attn.q_bias'] = torch.randn(dims)
            sd[p + 'attn.v_bias'] = torch.randn(dims)
            sd[p + 'attn.relative_position_bias_table'] = torch.randn(10, 2)
            sd[p + 'gamma_1'] = torch.randn(dims)
            sd[p + 'gamma_2'] = torch.randn(dims)
        else:
            sd[p + 'attn.qkv.bias'] = torch.randn(3 * dims)
        if kind == 'dinov2':
            sd[p + 'ls1.gamma'] = torch.randn(dims)
            sd[p + 'ls2.gamma'] = torch.randn(dims)
    if kind == 'dinov2':
        sd['mask_token'] = torch.zeros(1, dims)
    if kind == 'beit':  # relative position bias only
        del sd['pos_embed']
    if kind == 'deit-distilled':
        sd['dist_token'] = torch.randn(1, 1, dims)
        sd['pos_embed'] = torch.randn(1, grid * grid + 2, dims)
    return sd


@pytest.mark.parametrize('kind,patch,grid', [('deit', 16, 14),
                                             ('deit-distilled', 16, 14),
                                             ('dinov2', 14, 37),
                                             ('beit', 16, 14)])
def test_plain_vit_initialises_the_vit_part(kind, patch, grid):
    vit = _plain_vit(patch=patch, grid=grid, kind=kind)
    model = tiny()
    before = model.state_dict()['spm.fc1.weight'].clone()
    load_vit_comer_state_dict(model, {'model': vit})
    sd = model.state_dict()
    assert sd['pos_embed'].shape == (1, 4 * 4 + 1, 24)
    if kind != 'beit':
        assert torch.equal(sd['pos_embed'][:, :1], vit['pos_embed'][:, :1])
    assert sd['patch_embed.proj.weight'].shape == (24, 3, 16, 16)
    assert torch.equal(sd['blocks.3.mlp.fc2.weight'],
                       vit['blocks.3.mlp.fc2.weight'])
    assert torch.equal(sd['spm.fc1.weight'], before)
    if kind == 'beit':
        q, k, v = sd['blocks.0.attn.qkv.bias'].chunk(3)
        assert torch.equal(q, vit['blocks.0.attn.q_bias'])
        assert not k.any()
        assert torch.equal(sd['blocks.0.gamma1'], vit['blocks.0.gamma_1'])
    if kind == 'dinov2':
        assert torch.equal(sd['blocks.2.gamma2'], vit['blocks.2.ls2.gamma'])


def test_plain_vit_pos_embed_interpolation_keeps_a_same_size_grid():
    vit = _plain_vit(grid=4)
    out = convert_vit_to_vit_comer(vit, pretrain_size=64)
    assert torch.equal(out['pos_embed'], vit['pos_embed'])


def test_plain_vit_with_wrong_width_raises():
    with pytest.raises(RuntimeError, match='shape mismatch'):
        load_vit_comer_state_dict(tiny(), _plain_vit(dims=32))


@pytest.mark.parametrize('config,data', [
    ('vit_comer/mask-rcnn_vit-comer-nano_1xb2-shapes.py', 'coco_shapes_root'),
    ('vit_comer/upernet_vit-comer-nano_1xb2-shapes.py', 'ade20k_shapes_root'),
])
def test_vit_comer_tiny_config_trains(config, data, request, tmp_path):
    from _tiny_train import train_tiny
    losses = train_tiny(config, request.getfixturevalue(data), str(tmp_path))
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
