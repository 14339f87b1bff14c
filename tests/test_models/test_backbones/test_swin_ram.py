"""Tests of ``vitdense.models.backbones.swin_ram`` (ViDT's Swin with RAM) and
its converter ``vitdense.converters.vidt`` (backbone part).

Parity fixture ``tests/data/vidt/ram_official_swin_ram.pth``: the official
backbone (naver-ai/vidt ``methods/swin_w_ram.py`` at a8c48b5, the same
file as on ``main`` 5207d04) run on CPU outside this repository, see
``tests/data/vidt/ram_README.md``. The contract every backbone keeps (odd
sizes, empty batch, gradients, ``with_cp``, ``frozen_stages``, strict
``init_cfg`` loading) is checked in ``test_backbone_contract.py``.
"""
import os.path as osp

import pytest
import torch

from vitdense.converters import (CheckpointLayoutError,
                                 convert_swin_ram_checkpoint,
                                 convert_vidt_backbone, open_checkpoint)
from vitdense.models.backbones.swin import SwinTransformer
from vitdense.models.backbones.swin_ram import (SwinRAM,
                                                load_swin_ram_state_dict)

DATA = osp.join(osp.dirname(__file__), '..', '..', 'data')
FIXTURE = osp.join(DATA, 'vidt', 'ram_official_swin_ram.pth')
SWIN_FIXTURE = osp.join(DATA, 'swin', 'official_swin_tiny.pth')
CASES = ['cross3_none', 'cross3_pad', 'cross23_none', 'cross23_pad']
SMALL = dict(embed_dims=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
             window_size=7, det_token_num=5, pos_dims=8, reduced_dims=16,
             drop_path_rate=0.)


@pytest.fixture(scope='module')
def official():
    return torch.load(FIXTURE)


def _perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize('case', CASES)
def test_swin_ram_matches_official_vidt_backbone(official, case):
    """Converted, strictly loaded: patch maps, [DET] tokens and their
    embedding equal the official (B, C, N)/(1, P, N) outputs, transposed."""
    cross = tuple(int(c) for c in case.split('_')[0][len('cross'):])
    state_dict, settings = convert_swin_ram_checkpoint(official, cross)
    model = SwinRAM(**settings, drop_path_rate=0.).eval()
    load_swin_ram_state_dict(model, state_dict)
    ref = official['outputs'][case]
    with torch.no_grad():
        maps, det, det_pos = model(official['input'].float(),
                                   official['masks'][case.split('_')[1]])
    assert [m.shape for m in maps] == [r.shape for r in ref['maps']]
    for m, r in zip(maps, ref['maps']):
        assert (m - r).abs().max() <= 1e-4
    assert (det - ref['det_tgt'].transpose(1, 2)).abs().max() <= 1e-4
    assert det_pos.shape == (2, 10, 32)
    assert torch.equal(det_pos, ref['det_pos'].transpose(1, 2).expand(2, -1,
                                                                      -1))


def test_official_fixture_cases_differ_where_the_options_act(official):
    """The padding mask and ``cross_indices`` change only the [DET] tokens
    (so the parity cases above test them), and the padding mask only those
    of the padded image."""
    out = official['outputs']
    for a, b in (('cross3_none', 'cross3_pad'), ('cross3_none',
                                                  'cross23_none')):
        for m, n in zip(out[a]['maps'], out[b]['maps']):
            assert torch.equal(m, n)
        assert (out[a]['det_tgt'] - out[b]['det_tgt']).abs().max() > 1e-2
    assert torch.equal(out['cross3_none']['det_tgt'][0],
                       out['cross3_pad']['det_tgt'][0])


def test_swin_ram_loads_official_vidt_checkpoint_through_init_cfg(official):
    model = SwinRAM(**convert_swin_ram_checkpoint(official)[1],
                    init_cfg=dict(type='Pretrained', checkpoint=FIXTURE))
    model.init_weights()
    key = 'stages.3.downsample.reduction.weight'
    assert torch.equal(model.state_dict()[key],
                       convert_vidt_backbone(official)[key].float())


def test_converter_reads_settings_and_drops_unused_official_keys(official):
    state_dict, settings = convert_swin_ram_checkpoint(official)
    assert settings == dict(embed_dims=12, depths=(2, 2, 2, 2),
                            num_heads=(1, 2, 2, 4), window_size=7,
                            det_token_num=10, pos_dims=32, reduced_dims=256,
                            cross_indices=(3, ))
    dropped = {
        k[len('backbone.'):]
        for k in official['model']
        if '.expansion.' in k or '.norm2.' in k and 'downsample' in k
        or k.startswith('backbone.norm')
    }
    assert len(dropped) == 4 * 3 + 3 * 2  # 4 merges x 3, norm1..3 x 2
    assert not any(k.replace('layers', 'stages') in state_dict
                   for k in dropped)
    assert set(state_dict) == set(SwinRAM(**settings).state_dict())


def test_converter_takes_the_backbone_of_a_whole_detector_checkpoint(
        official):
    detector = {
        'model': {
            **official['model'], 'transformer.level_embed':
            torch.zeros(4, 256),
            'class_embed.0.weight': torch.zeros(91, 256)
        }
    }
    assert convert_vidt_backbone(detector).keys() == convert_vidt_backbone(
        official).keys()


def test_converter_refuses_other_layouts_naming_the_file(tmp_path):
    path = str(tmp_path / 'coat_ram.pth')
    torch.save({'model': {'backbone.cls_token': torch.zeros(1, 1, 8),
                          'backbone.det_token': torch.zeros(1, 4, 8)}}, path)
    with pytest.raises(CheckpointLayoutError,
                       match='not a official ViDT Swin-RAM') as err:
        with open_checkpoint(path) as checkpoint:
            convert_vidt_backbone(checkpoint)
    assert path in str(err.value) and 'det_pos_linear' in str(err.value)


def test_swin_ram_patch_maps_equal_plain_swin_with_the_same_weights():
    """RAM adds nothing to [PATCH] x [PATCH]: a plain Swin with the same
    weights gives the same stage outputs, whatever the [DET] tokens, the
    cross-attention stages and the padding mask."""
    ram = _perturbed(SwinRAM(**SMALL, cross_indices=(0, 1, 2, 3),
                             out_indices=(0, 1, 2, 3)))
    swin = SwinTransformer(
        **{k: SMALL[k] for k in ('embed_dims', 'depths', 'num_heads',
                                 'window_size', 'drop_path_rate')}).eval()
    for i in range(4):
        setattr(swin, f'norm{i}', torch.nn.Identity())
    swin.load_state_dict({k: v for k, v in ram.state_dict().items()
                          if k in swin.state_dict()})
    x = torch.randn(2, 3, 97, 131)
    mask = torch.zeros(2, 97, 131, dtype=torch.bool)
    mask[1, 50:, 70:] = True
    with torch.no_grad():
        refs = swin(x)
        for m in (None, mask):
            maps = ram(x, m)[0]
            assert len(maps) == 4
            for out, ref in zip(maps, refs):
                torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_swin_ram_loads_official_imagenet_swin_keeping_its_own_det_params():
    """A plain (classification) Swin checkpoint fills every Swin weight; the
    [DET] parameters and the last patch merging keep their init; the stage
    outputs are the official Swin's."""
    data = torch.load(SWIN_FIXTURE)
    arch = dict(embed_dims=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
                window_size=2, det_token_num=3, out_indices=(0, 1, 2, 3))
    torch.manual_seed(0)
    model = SwinRAM(**arch,
                    init_cfg=dict(type='Pretrained', checkpoint=SWIN_FIXTURE))
    own = {k: v.clone() for k, v in model.state_dict().items()}
    model.init_weights()
    model.eval()
    state = model.state_dict()
    kept = {k for k in state if torch.equal(state[k], own[k])
            and not k.endswith('relative_position_index')}
    assert {k.split('.', 4)[-1] if 'det_pos_linear' in k else k
            for k in kept} == {
                'det_token', 'det_pos_embed', 'det_pos_linear.weight',
                'det_pos_linear.bias', 'stages.3.downsample.norm.weight',
                'stages.3.downsample.norm.bias',
                'stages.3.downsample.reduction.weight'}
    with torch.no_grad():
        maps = model(data['input'])[0]
    for out, ref in zip(maps, data['outputs'], strict=True):
        assert (out - ref).abs().max() <= 1e-4
    with pytest.raises(RuntimeError, match='shape mismatch'):
        load_swin_ram_state_dict(SwinRAM(**dict(arch, embed_dims=16)), data)


def test_swin_ram_padding_mask_changes_only_padded_images_det_tokens():
    model = _perturbed(SwinRAM(**SMALL))
    x = torch.randn(2, 3, 61, 83)
    mask = torch.zeros(2, 61, 83, dtype=torch.bool)
    with torch.no_grad():
        maps, det, _ = model(x)
        maps0, det0, _ = model(x, mask)
        mask[1, 25:] = True  # official nearest sampling: rows 0, 30
        maps1, det1, _ = model(x, mask)
    assert torch.equal(det0, det)
    assert torch.equal(det1[0], det[0])
    assert (det1[1] - det[1]).abs().max() > 1e-3
    assert all(torch.equal(a, b) for a, b in zip(maps1, maps))


@pytest.mark.parametrize('size', [(17, 23), (97, 131), (224, 64)],
                         ids=lambda s: f'{s[0]}x{s[1]}')
def test_swin_ram_accepts_any_input_size(size):
    model = SwinRAM(**SMALL).eval()
    h, w = size
    with torch.no_grad():
        maps, det, det_pos = model(torch.randn(2, 3, h, w),
                                   torch.zeros(2, h, w, dtype=torch.bool))
    assert [tuple(m.shape) for m in maps] == [
        (2, c, -(-h // s), -(-w // s))
        for c, s in ((16, 8), (32, 16), (64, 32), (16, 64))
    ]
    assert det.shape == (2, 5, 64) and det_pos.shape == (2, 5, 8)
    assert torch.isfinite(det).all()


def test_swin_ram_arch_variants_and_overrides():
    model = SwinRAM(arch='n', det_token_num=7)
    assert model.num_features == [48, 96, 192, 384]
    assert [len(s.blocks) for s in model.stages] == [2, 2, 6, 2]
    assert model.det_token.shape == (1, 7, 48)
    assert model.det_pos_embed.shape == (1, 7, 256)
    assert model.stages[3].downsample.reduction.weight.shape == (256, 1536)
    assert model.stages[2].blocks[5].drop_path.drop_prob == 0.
    model = SwinRAM(arch='s', depths=(1, 1, 1, 1), drop_path_rate=0.1)
    assert model.num_features == [96, 192, 384, 768]
    assert model.stages[3].blocks[0].drop_path.drop_prob == \
        pytest.approx(0.1)
    with pytest.raises(KeyError, match="Unknown SwinRAM arch 'x'"):
        SwinRAM(arch='x')


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(out_indices=(1, 5)), ValueError, r'out_indices must be in 0\.\.4'),
    (dict(cross_indices=(4, )), ValueError,
     r'cross_indices must be in 0\.\.3'),
    (dict(small_maps='cls'), TypeError, 'SwinRAM has no small_maps'),
])
def test_swin_ram_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SwinRAM(**SMALL, **kwargs)


def test_swin_ram_rejects_a_mask_of_another_shape():
    model = SwinRAM(**SMALL).eval()
    with pytest.raises(ValueError,
                       match=r'mask must be \(B, H, W\) = \(2, 61, 83\)'):
        model(torch.randn(2, 3, 61, 83), torch.zeros(2, 61, 80).bool())


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-5),
                                       (torch.bfloat16, 0.1)],
                         ids=['fp64', 'bf16'])
def test_swin_ram_runs_in_pure_dtype(dtype, tol):
    model = _perturbed(SwinRAM(**SMALL))
    x = torch.randn(2, 3, 61, 83)
    mask = torch.zeros(2, 61, 83, dtype=torch.bool)
    mask[0, :, 50:] = True
    with torch.no_grad():
        maps, det, _ = model(x, mask)
        maps_d, det_d, pos_d = model.to(dtype)(x.to(dtype), mask)
    assert pos_d.dtype == dtype
    for o, r in zip((*maps_d, det_d), (*maps, det)):
        assert o.dtype == dtype
        assert (o.float() - r).abs().max() <= tol * r.abs().max()
