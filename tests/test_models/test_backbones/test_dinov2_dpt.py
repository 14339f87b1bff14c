"""Tests of ``vitdense.models.backbones.dinov2_dpt`` (DINOv2 ViT + the
Depth-Anything-V2 DPT head) and ``vitdense.converters.depth_anything``.

The fixtures in ``tests/data/depth_anything/`` come from the official code
run once on CPU outside this repository; their README names the commits and
settings:

* ``official_tiny_swiglu_reg.pth``: Depth-Anything-V2's own
  ``DepthAnythingV2.forward`` (SwiGLU ViT, 2 registers, cls-token readout);
* ``official_tiny_backbone_vit.pth``: MonoDINO-DETR's ``BackboneViT.forward``
  (pad to 14, resize, last three maps, ReLU depth);
* ``official_dinov2_reg_tiny.pth``: facebookresearch/dinov2 with 4 registers
  and the ``*_reg`` interpolation (offset 0, antialias);
* ``official_keys.json``: names and shapes of the full-size official models.
"""
import json
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from vitdense.converters import CheckpointLayoutError
from vitdense.converters.depth_anything import (
    convert_depth_anything, convert_depth_anything_checkpoint,
    infer_depth_anything_settings, load_depth_anything_state_dict)
from vitdense.models.backbones.dinov2_dpt import DepthAnythingV2

DATA = osp.join(osp.dirname(__file__), '..', '..', 'data', 'depth_anything')
TINY = dict(embed_dims=32, depth=5, num_heads=2, out_indices=(0, 2, 3, 4),
            dpt_features=8, dpt_channels=(4, 8, 12, 16))
#: the model settings of each parity fixture
OFFICIAL = {
    'official_tiny_swiglu_reg': dict(
        arch=dict(TINY, ffn='swiglu'), img_size=70, num_register_tokens=2,
        use_clstoken=True),
    'official_tiny_backbone_vit': dict(
        arch=dict(TINY, out_indices=(0, 1, 2, 3)), img_size=70,
        input_size=70),
    'official_dinov2_reg_tiny': dict(
        arch=dict(TINY, depth=3, out_indices=(0, 2)), img_size=56,
        num_register_tokens=4, interpolate_offset=0.,
        interpolate_antialias=True, with_depth_head=False),
}
#: official keys the official forward never uses (not built here)
UNUSED = {'mask_token', 'pretrained.mask_token'} | {
    f'depth_head.scratch.refinenet4.resConfUnit1.conv{i}.{p}'
    for i in (1, 2) for p in ('weight', 'bias')
}


def fixture(name):
    return torch.load(osp.join(DATA, f'{name}.pth'))


def official_model(name, **kwargs):
    data = fixture(name)
    model = DepthAnythingV2(**dict(OFFICIAL[name], **kwargs)).eval()
    load_depth_anything_state_dict(model, data['state_dict'])
    return model, data


def max_diff(outs, refs):
    assert len(outs) == len(refs)
    for o, r in zip(outs, refs):
        assert o.shape == r.shape
    return max((o - r).abs().max().item() for o, r in zip(outs, refs))


def test_matches_official_depth_anything_v2():
    model, data = official_model('official_tiny_swiglu_reg')
    with torch.no_grad():
        feats, depth = model(data['input'])
    assert max_diff(feats, data['feats']) <= 1e-4
    assert max_diff([depth], [data['depth']]) <= 1e-4
    assert (data['depth'] > 0).float().mean() > 0.5  # not a dead ReLU


def test_matches_monodino_detr_backbone_vit():
    """Input 61x83: padded to 70x84, resized to 70x70 (``BackboneViT`` with
    its target 518 made 70); block 4 is built but never run."""
    model, data = official_model('official_tiny_backbone_vit')
    calls = []
    model.blocks[4].register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        feats, depth = model(data['input'])
    assert calls == []
    assert [tuple(f.shape) for f in feats] == [(2, 32, 5, 5)] * 4
    assert max_diff(feats[-3:], data['feats']) <= 1e-4
    assert depth.shape == (2, 1, 70, 70)
    assert max_diff([depth], [data['depth']]) <= 1e-4
    assert (data['depth'] > 0).float().mean() > 0.2


def test_matches_official_dinov2_with_registers():
    model, data = official_model('official_dinov2_reg_tiny')
    with torch.no_grad():
        feats, depth = model(data['input'])
    assert depth is None
    assert max_diff(feats, data['feats']) <= 1e-4


@pytest.mark.parametrize('name, change', [
    ('official_tiny_swiglu_reg', dict(interpolate_offset=0.)),
    ('official_dinov2_reg_tiny', dict(interpolate_offset=0.1)),
    ('official_dinov2_reg_tiny', dict(interpolate_antialias=False)),
])
def test_position_interpolation_settings_are_seen_by_parity(name, change):
    """The parity fixtures tell the official offset/antialias choices
    apart: another choice misses them by far more than the tolerance."""
    model, data = official_model(name, **change)
    with torch.no_grad():
        feats, _ = model(data['input'])
    assert max_diff(feats, data['feats']) > 1e-2


def _meta_checkpoint(shapes):
    """A checkpoint of the official key layout without memory: every tensor
    an expanded scalar."""
    return {k: torch.zeros(()).expand(s) for k, s in shapes.items()}


def _official_layouts():
    table = json.load(open(osp.join(DATA, 'official_keys.json')))
    return [(family, arch, keys) for family, archs in table.items()
            for arch, keys in archs.items()]


EXPECTED_SETTINGS = {
    'vits': dict(arch='vits', img_size=518, with_depth_head=True),
    'vitb': dict(arch='vitb', img_size=518, with_depth_head=True),
    'vitl': dict(arch='vitl', img_size=518, with_depth_head=True),
    'vitg': dict(arch='vitg', img_size=518, with_depth_head=True),
    'vitb14': dict(arch='vitb', img_size=518, with_depth_head=False),
    'vitg14': dict(arch='vitg', img_size=518, with_depth_head=False),
    'vitb14_reg': dict(arch='vitb', img_size=518, with_depth_head=False,
                       num_register_tokens=4, interpolate_offset=0.,
                       interpolate_antialias=True),
}


@pytest.mark.parametrize('family, arch, shapes', _official_layouts(),
                         ids=[f'{f}-{a}' for f, a, _ in _official_layouts()])
def test_official_key_layout_converts_and_loads_strictly(
        family, arch, shapes):
    """Each official key maps to its own vitdense key (only the unused ones
    are dropped) and the result fills the variant's model exactly."""
    state_dict = convert_depth_anything(_meta_checkpoint(shapes))
    unused = set(shapes) & UNUSED
    assert len(unused) == (5 if family == 'depth_anything_v2' else 1)
    assert len(state_dict) == len(shapes) - len(unused)
    settings = infer_depth_anything_settings(state_dict)
    assert settings == EXPECTED_SETTINGS[arch]
    with torch.device('meta'):
        model = DepthAnythingV2(**settings)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == {
        k: list(v.shape) for k, v in state_dict.items()}
    if family == 'depth_anything_v2':
        new = state_dict['depth_head.fusions.0.res_unit1.conv2.weight']
        old = shapes['depth_head.scratch.refinenet1.resConfUnit1.conv2.weight']
        assert list(new.shape) == old
        assert 'depth_head.fusions.3.res_unit1.conv1.weight' not in state_dict


def test_converter_tool_writes_what_the_model_loads(tmp_path):
    from tools.model_converters.depth_anything2vitdense import convert
    shapes = json.load(open(osp.join(
        DATA, 'official_keys.json')))['depth_anything_v2']['vitb']
    src, dst = str(tmp_path / 'da_vitb.pth'), str(tmp_path / 'out.pth')
    torch.save(_meta_checkpoint(shapes), src)
    state_dict = convert(src, dst)
    written = torch.load(dst)['state_dict']
    assert written.keys() == state_dict.keys()
    assert written['depth_head.out_conv3.weight'].shape == (1, 32, 1, 1)
    assert 'pretrained.cls_token' not in written and 'cls_token' in written


def test_converter_refuses_sizes_of_no_variant():
    data = fixture('official_tiny_swiglu_reg')
    with pytest.raises(ValueError, match='no DepthAnythingV2 variant'):
        convert_depth_anything_checkpoint(data['state_dict'])


def test_converter_refuses_another_layout_naming_the_keys():
    vit = {'cls_token': torch.zeros(1, 1, 8), 'pos_embed': torch.zeros(1),
           'patch_embed.proj.weight': torch.zeros(1),
           'blocks.0.attn.qkv.weight': torch.zeros(1)}  # no layer scale
    with pytest.raises(CheckpointLayoutError) as err:
        convert_depth_anything({'model': vit})
    for key in ('pretrained.cls_token', 'depth_head.projects.0.weight',
                'blocks.0.ls1.gamma'):
        assert key in str(err.value)


def test_pretrained_init_cfg_loads_the_official_file(tmp_path):
    data = fixture('official_tiny_swiglu_reg')
    path = str(tmp_path / 'official.pth')
    torch.save(data['state_dict'], path)
    model = DepthAnythingV2(
        **OFFICIAL['official_tiny_swiglu_reg'],
        init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    with torch.no_grad():
        feats, depth = model.eval()(data['input'])
    assert max_diff([*feats, depth], [*data['feats'], data['depth']]) <= 1e-4


def test_dinov2_checkpoint_leaves_the_dpt_head_initialised():
    data = fixture('official_dinov2_reg_tiny')
    settings = dict(OFFICIAL['official_dinov2_reg_tiny'],
                    arch=dict(TINY, depth=3, out_indices=(0, 1, 2, 2)),
                    with_depth_head=True)
    model = DepthAnythingV2(**settings)
    head = {k: v.clone() for k, v in model.depth_head.state_dict().items()}
    load_depth_anything_state_dict(model, data['state_dict'])
    assert torch.equal(model.blocks[2].ls2.gamma,
                       data['state_dict']['blocks.2.ls2.gamma'])
    for k, v in model.depth_head.state_dict().items():
        assert torch.equal(v, head[k]), k


def test_features_only_model_ignores_the_dpt_weights():
    data = fixture('official_tiny_swiglu_reg')
    model, _ = official_model('official_tiny_swiglu_reg',
                              with_depth_head=False)
    assert model.depth_head is None
    with torch.no_grad():
        feats, depth = model(data['input'])
    assert depth is None and max_diff(feats, data['feats']) <= 1e-4


def test_strict_load_names_missing_and_mismatched_keys():
    data = fixture('official_tiny_backbone_vit')
    state_dict = dict(data['state_dict'])
    state_dict.pop('depth_head.scratch.refinenet2.out_conv.bias')
    model = DepthAnythingV2(**OFFICIAL['official_tiny_backbone_vit'])
    with pytest.raises(RuntimeError, match='Missing key') as err:
        load_depth_anything_state_dict(model, state_dict)
    assert 'depth_head.fusions.1.out_conv.bias' in str(err.value)
    wide = DepthAnythingV2(**dict(OFFICIAL['official_tiny_backbone_vit'],
                                  arch=dict(TINY, embed_dims=48)))
    with pytest.raises(RuntimeError,
                       match='size mismatch for blocks.0.attn.proj.bias'):
        load_depth_anything_state_dict(wide, data['state_dict'])


def tiny(**kwargs):
    torch.manual_seed(0)
    return DepthAnythingV2(**dict(dict(arch=TINY, img_size=42), **kwargs))


def test_frozen_by_default_no_gradients_and_stays_in_eval():
    model = tiny()
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    assert not any(m.training for m in model.modules())
    x = torch.randn(2, 3, 45, 61)
    feats, depth = model(x)
    assert not any(t.requires_grad for t in (*feats, depth))
    _, eval_depth = model.eval()(x)
    assert torch.equal(depth, eval_depth)
    x.requires_grad_()  # gradients pass to the input, never to the weights
    sum(t.sum() for t in model.train()(x)[0]).backward()
    assert x.grad is not None
    assert all(p.grad is None for p in model.parameters())


def test_frozen_stages_freeze_a_prefix_when_not_frozen():
    model = tiny(frozen=False, frozen_stages=2).train()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters()
                      if n.startswith(('patch_embed.', 'cls_token',
                                       'pos_embed', 'blocks.0.',
                                       'blocks.1.'))}
    assert not model.blocks[1].training and model.blocks[2].training
    everything = tiny(frozen=False, frozen_stages=TINY['depth'] + 1)
    assert not any(p.requires_grad for p in everything.parameters())


@pytest.mark.parametrize('size', [(14, 14), (15, 29), (45, 61), (97, 131)])
def test_accepts_any_input_size(size):
    model = tiny().eval()
    h, w = size
    with torch.no_grad():
        feats, depth = model(torch.randn(2, 3, h, w))
    assert [tuple(f.shape) for f in feats] == [
        (2, 32, -(-h // 14), -(-w // 14))] * 4
    assert depth.shape == (2, 1, h, w) and (depth >= 0).all()


def test_odd_input_equals_zero_padded_input_cropped():
    model = tiny().eval()
    x = torch.randn(2, 3, 40, 53)
    with torch.no_grad():
        feats, depth = model(x)
        ref_feats, ref_depth = model(F.pad(x, (0, 3, 0, 2)))
    assert max_diff(feats, ref_feats) == 0
    assert torch.equal(depth, ref_depth[..., :40, :53])


def test_input_size_resizes_the_padded_image():
    model = tiny(input_size=(42, 56)).eval()
    x = torch.randn(2, 3, 40, 53)
    with torch.no_grad():
        feats, depth = model(x)
        resized = F.interpolate(F.pad(x, (0, 3, 0, 2)), size=(42, 56),
                                mode='bilinear', align_corners=False)
        ref_feats, ref_depth = tiny().eval()(resized)
    assert [tuple(f.shape) for f in feats] == [(2, 32, 3, 4)] * 4
    assert depth.shape == (2, 1, 42, 56)
    assert max_diff([*feats, depth], [*ref_feats, ref_depth]) == 0


@pytest.mark.parametrize('kwargs, message', [
    (dict(arch='vitx'), 'Unknown DepthAnythingV2 arch'),
    (dict(arch=dict(TINY, ffn='geglu')), "ffn must be 'mlp' or 'swiglu'"),
    (dict(out_indices=(1, 2, 3)), 'the DPT head needs 4 out_indices'),
    (dict(out_indices=(0, 5), with_depth_head=False), 'block indices'),
    (dict(input_size=50), 'multiples of 14'),
    (dict(frozen_stages=1), 'frozen=False'),
])
def test_invalid_arguments_raise(kwargs, message):
    with pytest.raises((KeyError, ValueError), match=message):
        tiny(**kwargs)
