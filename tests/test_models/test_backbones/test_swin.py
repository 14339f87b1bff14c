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

Small-map fixtures (``tests/data/swin/README.md``), both from a 3-stage model
(embed_dim 8, depths [2,2,2], num_heads [1,2,4], window 4, mlp_ratio 4),
batch 2: ``official_swin_cls_small_map.pth``: the classification model at
64x64 (stage 3 is one 4x4 window: no shift);
``official_swin_det_small_map.pth``: the official detection backbone
(Swin-Transformer-Object-Detection c7b2011) on 61x45 (stage 3 is 4x3: shifted
anyway, padded), with its ``norm{i}``.
"""
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
SMALL_MAP = dict(embed_dims=8, depths=(2, 2, 2), num_heads=(1, 2, 4),
                 window_size=4, out_indices=(0, 1, 2), drop_path_rate=0.)


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


def test_swin_arch_can_be_overridden():
    model = SwinTransformer(arch='t', depths=(1, 1, 1, 1), window_size=4)
    assert model.num_features == [96, 192, 384, 768]
    assert [len(s.blocks) for s in model.stages] == [1, 1, 1, 1]


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


def _small_map_model(fixture: str, **kwargs):
    data = torch.load(osp.join(DATA, fixture))
    model = SwinTransformer(**SMALL_MAP, **kwargs)
    load_swin_state_dict(model, convert_swin(data))
    return data, model.eval()


def _max_diffs(outs, refs):
    assert [o.shape for o in outs] == [r.shape for r in refs]
    return [(o.double() - r.double()).abs().max().item()
            for o, r in zip(outs, refs)]


def test_swin_small_maps_cls_matches_official_classification_model():
    data, model = _small_map_model('official_swin_cls_small_map.pth',
                                   small_maps='cls')
    for i in range(3):  # the classification model has no per-output norms
        setattr(model, f'norm{i}', torch.nn.Identity())
    with torch.no_grad():
        assert max(_max_diffs(model(data['input']), data['outputs'])) <= 1e-4
        model.stages[2].blocks[1].attn.small_maps = 'det'  # shifts: differs
        assert _max_diffs(model(data['input']), data['outputs'])[2] > 1e-2
    data, model = _small_map_model('official_swin_det_small_map.pth',
                                   small_maps='cls')
    with torch.no_grad():  # and differs from the detection code there
        assert _max_diffs(model(data['input']), data['outputs'])[2] > 1e-2


def test_swin_default_matches_official_detection_backbone_on_small_maps():
    data, model = _small_map_model('official_swin_det_small_map.pth')
    with torch.no_grad():
        assert max(_max_diffs(model(data['input']), data['outputs'])) <= 1e-4


def test_swin_cls_window_smaller_than_table_reads_its_offsets():
    """A 4x4 map under a window of 7 is one 4x4 window whose bias is the
    table's entries for offsets -3..3, i.e. a window-4 attention holding the
    central 7x7 of the 13x13 table."""
    model = SwinTransformer(embed_dims=8, depths=(2, 2, 2, 2),
                            num_heads=(1, 2, 2, 4), window_size=7,
                            small_maps='cls').eval()
    attn = model.stages[0].blocks[1].attn  # a shifted block
    torch.nn.init.normal_(attn.w_msa.relative_position_bias_table)
    ref = SwinTransformer(embed_dims=8, depths=(2, 2, 2, 2),
                          num_heads=(1, 2, 2, 4), window_size=4).eval()
    ref_attn = ref.stages[0].blocks[0].attn  # unshifted, window 4
    state = attn.state_dict()
    state['w_msa.relative_position_bias_table'] = \
        attn.w_msa.relative_position_bias_table.detach().view(
            13, 13, -1)[3:10, 3:10].reshape(49, -1)
    state['w_msa.relative_position_index'] = \
        ref_attn.state_dict()['w_msa.relative_position_index']
    ref_attn.load_state_dict(state)
    x = torch.randn(2, 16, 8)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, (4, 4)), ref_attn(x, (4, 4)))
        x = torch.randn(2, 4 * 9, 8)  # a 4x9 map: 4x4 windows, padded
        torch.testing.assert_close(attn(x, (4, 9)), ref_attn(x, (4, 9)))


def test_swin_small_maps_must_be_known():
    with pytest.raises(ValueError, match="small_maps must be 'det' or 'cls'"):
        SwinTransformer(**TINY, small_maps='classification')


@pytest.mark.parametrize('kwargs', [{}, dict(small_maps='cls')],
                         ids=['det', 'cls'])
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-5),
                                       (torch.bfloat16, 0.1)],
                         ids=['fp64', 'bf16'])
def test_swin_runs_in_pure_dtype(kwargs, dtype, tol):
    """module.to(dtype) with an input of that dtype runs (mmdet's fp32 shift
    mask broke bf16) and matches fp32; bf16 loosely (8 mantissa bits)."""
    data, model = _small_map_model('official_swin_det_small_map.pth',
                                   **kwargs)
    with torch.no_grad():
        refs = model(data['input'])
        outs = model.to(dtype)(data['input'].to(dtype))
    assert all(o.dtype == dtype for o in outs)
    for o, r in zip(outs, refs):
        assert (o.float() - r).abs().max() <= tol * r.abs().max()
