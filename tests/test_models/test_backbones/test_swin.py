"""Tests of ``vitdense.models.backbones.swin`` (mmdet's Swin, strict loading).

Parity fixture ``tests/data/swin/official_swin_tiny.pth``: the official
classification model, microsoft/Swin-Transformer at f82860b,
``models/swin_transformer.py`` (``SwinTransformer``), run once on CPU outside
this repository with timm's layers stubbed.  Settings: img_size 128, patch 4,
embed_dim 8, depths [2,2,2,2], num_heads [1,2,2,4], window_size 2,
mlp_ratio 4, qkv_bias, no ape, patch_norm, num_classes 10, drop_path 0, eval
mode; every parameter drawn at random (seed 0), input ``randn(1, 3, 128,
128)`` (seed 1).  The file holds ``{'model': official state dict}`` (head,
``attn_mask`` buffers included, as in the official checkpoints), the input
and the stage outputs before downsampling (hooks on
``layers[i].blocks[-1]``, reshaped to NCHW).

``official_swin_keys.json``: key -> shape of the official T/S/B/L models
(window 7, 224), for strict layout checks.
"""
import importlib
import json
import os.path as osp
from unittest import mock

import pytest
import torch
from mmdet.models.backbones import SwinTransformer as MMDetSwin
from mmengine.config import ConfigDict

from vitdense.models.backbones.swin import (SwinTransformer, convert_swin,
                                            load_swin_state_dict)

DATA = osp.join(osp.dirname(__file__), '..', '..', 'data', 'swin')
FIXTURE = osp.join(DATA, 'official_swin_tiny.pth')
TINY = dict(embed_dims=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
            window_size=2, pretrain_img_size=128, drop_path_rate=0.)


def test_swin_matches_official_model():
    data = torch.load(FIXTURE)
    model = SwinTransformer(**TINY)
    load_swin_state_dict(model, convert_swin(data))
    for i in range(4):  # compare stage outputs before the added norms
        setattr(model, f'norm{i}', torch.nn.Identity())
    model.eval()
    with torch.no_grad():
        outs = model(data['input'])
    for out, ref in zip(outs, data['outputs']):
        assert out.shape == ref.shape
        assert (out - ref).abs().max() <= 1e-4


@pytest.mark.parametrize('arch', ['t', 's', 'b', 'l'])
def test_swin_variant_loads_official_key_layout(arch):
    official = json.load(open(osp.join(DATA, 'official_swin_keys.json')))[arch]
    state_dict = {
        k: torch.empty(shape, device='meta')
        for k, shape in official['keys'].items()
    }
    linspace = torch.linspace
    # mmdet calls .item() on a linspace; keep that one tensor off `meta`
    with torch.device('meta'), mock.patch(
            'torch.linspace',
            lambda *a, **k: linspace(*a, **dict(k, device='cpu'))):
        model = SwinTransformer(arch=arch)
    converted = convert_swin({'model': state_dict})
    load_swin_state_dict(model, converted)
    assert set(model.state_dict()) - set(converted) == {
        f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias')
    }


@pytest.mark.parametrize('hw', [(224, 224), (225, 319), (97, 131)])
def test_swin_accepts_any_input_size(hw):
    model = SwinTransformer(
        embed_dims=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *hw))
    for i, (out, stride) in enumerate(zip(outs, (4, 8, 16, 32))):
        assert out.shape == (1, 8 * 2**i, -(-hw[0] // stride),
                             -(-hw[1] // stride))


def test_swin_gradients_reach_every_parameter():
    model = SwinTransformer(**TINY)
    model.init_weights()
    model.train()
    # 128: the last stage (4x4) holds several windows; at 2x2 a shifted
    # window's mask leaves one key per query and the bias gets no gradient
    outs = model(torch.randn(2, 3, 128, 128))
    sum(o.square().mean() for o in outs).backward()
    no_grad = [n for n, p in model.named_parameters()
               if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def test_swin_arch_can_be_overridden():
    model = SwinTransformer(arch='t', depths=(1, 1, 1, 1), window_size=4)
    assert model.num_features == [96, 192, 384, 768]
    assert [len(s.blocks) for s in model.stages] == [1, 1, 1, 1]


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'vitdense'])
def test_swin_builds_from_every_scope(scope):
    from mmengine.registry import DefaultScope
    registry = importlib.import_module(f'{scope}.registry').MODELS
    cfg = dict(type='vitdense.SwinTransformer', **TINY)
    with DefaultScope.overwrite_default_scope(scope):
        assert type(registry.build(cfg)) is SwinTransformer
    if scope == 'vitdense':
        with DefaultScope.overwrite_default_scope(scope):
            cfg['type'] = 'SwinTransformer'
            assert type(registry.build(cfg)) is SwinTransformer


def test_swin_converter_tool_output_loads_in_vitdense_and_mmdet(tmp_path):
    from tools.model_converters.swin2vitdense import convert
    dst = str(tmp_path / 'swin_vitdense.pth')
    convert(FIXTURE, dst)
    saved = torch.load(dst)['state_dict']
    assert all(k.startswith('backbone.') for k in saved)
    for cls in (SwinTransformer, MMDetSwin):  # mmdet: convert_weights=False
        model = cls(
            **TINY, init_cfg=ConfigDict(type='Pretrained', checkpoint=dst))
        model.init_weights()
        key = 'stages.1.downsample.reduction.weight'
        assert torch.equal(model.state_dict()[key], saved['backbone.' + key])


def test_swin_pretrained_accepts_official_checkpoint_directly():
    model = SwinTransformer(
        **TINY, init_cfg=dict(type='Pretrained', checkpoint=FIXTURE))
    model.init_weights()
    official = torch.load(FIXTURE)['model']
    assert torch.equal(model.patch_embed.projection.weight,
                       official['patch_embed.proj.weight'])


def test_swin_load_that_matches_nothing_raises(tmp_path):
    official = torch.load(FIXTURE)['model']
    path = str(tmp_path / 'prefixed.pth')
    torch.save({'state_dict': {'encoder.' + k: v
                               for k, v in official.items()}}, path)
    model = SwinTransformer(
        **TINY, init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(RuntimeError, match='does not match'):
        model.init_weights()


def test_swin_wrong_variant_raises():
    official = torch.load(FIXTURE)
    model = SwinTransformer(**dict(TINY, depths=(2, 2, 1, 2)))
    with pytest.raises(RuntimeError, match='unexpected'):
        load_swin_state_dict(model, convert_swin(official))
    model = SwinTransformer(**dict(TINY, embed_dims=16))
    with pytest.raises(RuntimeError, match='shape mismatch'):
        load_swin_state_dict(model, convert_swin(official))


@pytest.mark.parametrize('config,data', [
    ('swin/mask-rcnn_swin-nano_1xb2-shapes.py', 'coco_shapes_root'),
    ('swin/upernet_swin-nano_1xb2-shapes.py', 'ade20k_shapes_root'),
])
def test_swin_tiny_config_trains(config, data, request, tmp_path):
    from _tiny_train import train_tiny
    losses = train_tiny(config, request.getfixturevalue(data), str(tmp_path))
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))


def test_swin_eval_returns_the_module():
    model = SwinTransformer(**TINY)
    assert model.eval() is model and not model.training
