"""The contract every vitdense backbone keeps (issue 13, item 8), as timm's
``tests/test_models.py`` checks all its models.

Parametrized over every class that ``vitdense.models.backbones`` registers
in ``vitdense.registry.MODELS``, each built in the tiny arch of
:data:`TINY`; a backbone registered without an entry there fails. Family
files (``test_<family>.py``) keep what is particular to a family: parity
with the official code, converters, special options and configs.

The empty-batch tests (issue 12, item 17) were ``test_empty_batch.py``.
"""
import importlib
import inspect
import re
from typing import Dict

import pytest
import torch
from mmengine.registry import DefaultScope
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import vitdense.models  # noqa: F401
from vitdense.registry import MODELS

STRIDES = (4, 8, 16, 32)
# odd, non-square; none is 32k..32k+3, where CrossFormer keeps the official
# floor(n / 4) grid (test_crossformer.py checks that grid)
SIZES = [(61, 83), (70, 45)]

# embed 32: the DPB width is dim // 16 (a width-1 LN blocks grads); 4 blocks
# in stage 3: one amplitude cooling layer
CROSSFORMER = dict(embed_dims=32, depths=[1, 2, 4, 1], num_heads=[1, 2, 2, 4],
                   group_size=[4, 4, 4, 4], interval=[4, 2, 1, 1],
                   use_acl=True)
RMT = dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1],
           num_heads=[2, 2, 4, 4], init_values=[2, 2, 2, 2],
           heads_ranges=[4, 4, 6, 6], mlp_ratios=[2, 2, 2, 2],
           decomposed=[True, True, False, False],
           layerscales=[False, False, True, True])
VIT_COMER = dict(embed_dims=24, depth=2, num_heads=2, deform_num_heads=4,
                 deform_ratio=1.0, interaction_indexes=[[0, 0], [1, 1]])
# fusion width 16: the random DPT output (nearly constant at init) is > 0 here,
# so its final ReLU passes gradients
DINOV2_DPT = dict(embed_dims=16, depth=4, num_heads=2,
                  out_indices=(0, 1, 2, 3), dpt_features=16,
                  dpt_channels=(4, 8, 12, 16))
#: per registered name: ``kwargs`` of a tiny arch, its ``channels`` (strides
#: 4-32, or ``strides``: one per output map), ``select``: overrides under
#: which ``out_indices=(1, 3)`` is valid, ``wrong``: overrides giving another
#: arch (for strict loading),
#: ``frozen``: the parameter-name prefixes ``frozen_stages=1`` freezes,
#: ``not_checkpointed``: Linear layers ``with_cp`` leaves alone,
#: ``frozen_recomputed``: frozen Linear layers that ``with_cp`` recomputes
#: (a gradient to trainable inputs passes through them),
#: ``zero_grad``: parameters whose gradient is legitimately exactly 0,
#: ``shadowed_in``: scopes whose own class has the plain name,
#: ``tokens``: shapes (without batch) of the token outputs after the maps
TINY: Dict[str, dict] = {
    'CrossFormer': dict(
        kwargs=dict(arch=CROSSFORMER, drop_path_rate=0.),
        channels=(32, 64, 128, 256),
        wrong=dict(arch=dict(CROSSFORMER, depths=[1, 2, 4, 2])),
        frozen=('patch_embed.', 'layers.0.'),
        # a per-head constant bias cannot change a softmax
        zero_grad=r'.*\.pos3\.2\.bias'),
    # (ViT maps at stride 14, relative depth at the input size); the DPT
    # head needs 4 maps
    'DepthAnythingV2': dict(
        kwargs=dict(arch=DINOV2_DPT, img_size=42, frozen=False),
        channels=(16, 16, 16, 16, 1),
        strides=(14, 14, 14, 14, 1),
        select=dict(with_depth_head=False),
        wrong=dict(arch=dict(DINOV2_DPT, depth=5)),
        frozen=('patch_embed.', 'cls_token', 'pos_embed', 'blocks.0.')),
    'RMT': dict(
        kwargs=dict(arch=RMT, drop_path_rate=0.),
        channels=(16, 32, 48, 64),
        wrong=dict(arch=dict(RMT, depths=[1, 1, 2, 1])),
        frozen=('patch_embed.', 'layers.0.', 'extra_norms.0.')),
    'SwinTransformer': dict(
        kwargs=dict(embed_dims=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
                    window_size=2, pretrain_img_size=64, drop_path_rate=0.),
        channels=(8, 16, 32, 64),
        wrong=dict(depths=(2, 2, 4, 2)),
        frozen=('patch_embed.', 'stages.0.', 'norm0.'),
        not_checkpointed=r'stages\.\d\.downsample\..*',
        shadowed_in=('mmdet', 'mmseg')),
    # all five levels (stage outputs + the last patch merging); then the
    # [DET] tokens and their positional embedding
    'SwinRAM': dict(
        kwargs=dict(embed_dims=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
                    window_size=2, det_token_num=4, pos_dims=8,
                    reduced_dims=16, out_indices=(0, 1, 2, 3, 4),
                    drop_path_rate=0.),
        channels=(8, 16, 32, 64, 16),
        strides=(4, 8, 16, 32, 64),
        tokens=((4, 64), (4, 8)),
        wrong=dict(depths=(2, 2, 4, 2)),
        frozen=('patch_embed.', 'stages.0.'),
        not_checkpointed=r'stages\.\d\.downsample\..*',
        # the trainable [DET] tokens pass the frozen stage
        frozen_recomputed=r'stages\.0\.blocks\..*'),
    'ViTCoMer': dict(
        kwargs=dict(arch=VIT_COMER, pretrain_size=64, conv_inplane=8,
                    n_points=2),
        channels=(24, 24, 24, 24),
        wrong=dict(arch=dict(VIT_COMER, depth=3,
                             interaction_indexes=[[0, 0], [1, 2]])),
        frozen=('patch_embed.', 'pos_embed', 'level_embed', 'spm.',
                'interactions.0.', 'blocks.0.')),
}


def registered_backbones() -> Dict[str, type]:
    return {
        name: cls
        for name, cls in MODELS.module_dict.items()
        if cls.__module__.startswith('vitdense.models.backbones.')
    }


NAMES = sorted(registered_backbones())


def build(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    cfg = dict(TINY[name]['kwargs'], **kwargs)
    return MODELS.build(dict(type=name, **cfg))


def perturb(model: nn.Module) -> nn.Module:
    """Move every parameter off its initial value (unit norms, zero-init
    offsets and scales hide gradients), deterministically."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def maps_of(outs) -> list:
    """The tensors of a backbone's output, in order: a tuple of maps, or
    nested tuples and None (``DepthAnythingV2``: ``(maps, depth)``)."""
    if isinstance(outs, torch.Tensor):
        return [outs]
    return [] if outs is None else [t for o in outs for t in maps_of(o)]


def loss_of(outs) -> torch.Tensor:
    """A fixed random projection of every output (a plain sum has zero
    gradient through LayerNorm/BatchNorm outputs)."""
    g = torch.Generator().manual_seed(2)
    return sum((o * torch.randn(o.shape, generator=g)).sum()
               for o in maps_of(outs))


def grads_of(model: nn.Module, x: torch.Tensor) -> dict:
    model.zero_grad()
    outs = model(x)
    loss_of(outs).backward()
    return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def test_every_registered_backbone_has_a_tiny_arch():
    assert NAMES, 'no backbone registered by vitdense.models.backbones'
    assert set(NAMES) == set(TINY)


@pytest.mark.parametrize('size', SIZES, ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('name', NAMES)
def test_odd_input_gives_documented_levels(name, size):
    model = build(name).eval()
    h, w = size
    with torch.no_grad():
        outs = maps_of(model(torch.randn(2, 3, h, w)))
    assert [tuple(o.shape) for o in outs] == [
        (2, c, -(-h // s), -(-w // s)) for c, s in zip(
            TINY[name]['channels'], TINY[name].get('strides', STRIDES))
    ] + [(2, *t) for t in TINY[name].get('tokens', ())]


@pytest.mark.parametrize('name', NAMES)
def test_out_indices_select_levels(name):
    model = build(name, out_indices=(1, 3),
                  **TINY[name].get('select', {})).eval()
    with torch.no_grad():
        outs = maps_of(model(torch.randn(1, 3, 61, 83)))
    channels = TINY[name]['channels']
    strides = TINY[name].get('strides', STRIDES)
    assert [tuple(o.shape) for o in outs] == [
        (1, channels[i], -(-61 // strides[i]), -(-83 // strides[i]))
        for i in (1, 3)
    ] + [(1, *t) for t in TINY[name].get('tokens', ())]


@pytest.mark.parametrize('name', NAMES)
def test_gradients_reach_every_trainable_parameter(name):
    model = perturb(build(name)).train()
    grads = grads_of(model, torch.randn(2, 3, 61, 83))
    assert grads and all(g is not None for g in grads.values()), [
        n for n, g in grads.items() if g is None
    ]
    assert all(torch.isfinite(g).all() for g in grads.values())
    zero = sorted(n for n, g in grads.items() if not g.any())
    allowed = TINY[name].get('zero_grad')
    assert [n for n in zero if not (allowed and re.fullmatch(allowed, n))
            ] == []


@pytest.mark.parametrize('name', NAMES)
def test_with_cp_gives_equal_outputs_and_gradients(name):
    model = perturb(build(name)).eval()
    model_cp = build(name, with_cp=True).eval()
    model_cp.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 61, 83)
    outs, outs_cp = model(x), model_cp(x)
    for o, o_cp in zip(maps_of(outs), maps_of(outs_cp), strict=True):
        torch.testing.assert_close(o_cp, o, rtol=1e-5, atol=1e-6)
    loss_of(outs).backward()
    loss_of(outs_cp).backward()
    for (n, p), p_cp in zip(model.named_parameters(),
                            model_cp.parameters()):
        torch.testing.assert_close(p_cp.grad, p.grad, rtol=1e-5, atol=1e-6,
                                   msg=n)


@pytest.mark.parametrize('name', NAMES)
def test_with_cp_recomputes_trainable_blocks_behind_frozen_stages(name):
    """Behind a frozen stage the input needs no gradient but the blocks'
    weights do: checkpointing must stay on (gated on autograd, not on the
    input), i.e. every trainable Linear runs again in the backward pass."""
    model = build(name, with_cp=True, frozen_stages=1).train()
    calls = {}
    linears = {n: m for n, m in model.named_modules()
               if isinstance(m, nn.Linear)}
    for n, m in linears.items():
        m.register_forward_pre_hook(
            lambda m, args, n=n: calls.__setitem__(n, calls.get(n, 0) + 1))
    loss = loss_of(model(torch.randn(1, 3, 61, 83)))
    forward, calls = calls, {}
    loss.backward()
    skip = TINY[name].get('not_checkpointed')
    frozen = TINY[name].get('frozen_recomputed')
    expected = {
        n: forward[n]
        for n, m in linears.items()
        if (m.weight.requires_grad or frozen and re.fullmatch(frozen, n))
        and n in forward and not (skip and re.fullmatch(skip, n))
    }
    assert expected and calls == expected


@pytest.mark.parametrize('name', NAMES)
def test_frozen_stages_freeze_what_they_say(name):
    model = build(name, frozen_stages=1).train()
    frozen = TINY[name]['frozen']
    assert {n for n, p in model.named_parameters() if not p.requires_grad
            } == {n for n, _ in model.named_parameters()
                  if n.startswith(frozen)}
    for n, m in model.named_modules():
        if next(m.parameters(recurse=False), None) is not None:
            assert m.training != (n + '.').startswith(frozen), n
    # the trainable rest still learns
    grads = grads_of(perturb(model), torch.randn(2, 3, 61, 83))
    assert all(g is not None and g.any() for n, g in grads.items()
               if not re.fullmatch(TINY[name].get('zero_grad', '$^'), n))


@pytest.mark.parametrize('name', [
    n for n in NAMES
    if 'norm_eval' in inspect.signature(registered_backbones()[n]).parameters
])
def test_norm_eval_keeps_batch_norms_in_eval(name):
    model = build(name, norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and not any(m.training for m in bns)
    assert all(m.training for m in model.modules()
               if not isinstance(m, _BatchNorm))


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'vitdense'])
@pytest.mark.parametrize('name', NAMES)
def test_builds_by_plain_name_from_every_scope(name, scope):
    """A plain name builds vitdense's class from every scope, unless that
    scope has its own class of that name (then ``vitdense.<Name>``)."""
    cls = registered_backbones()[name]
    registry = importlib.import_module(f'{scope}.registry').MODELS
    kwargs = TINY[name]['kwargs']
    with DefaultScope.overwrite_default_scope(scope):
        plain = registry.build(dict(type=name, **kwargs))
        prefixed = registry.build(dict(type=f'vitdense.{name}', **kwargs))
    assert type(prefixed) is cls
    if scope in TINY[name].get('shadowed_in', ()):
        assert type(plain).__module__.startswith(f'{scope}.')
    else:
        assert type(plain) is cls


@pytest.mark.parametrize('name', NAMES)
def test_pretrained_init_cfg_loads_strictly(name, tmp_path):
    """``init_cfg=dict(type='Pretrained')`` loads a checkpoint of the same
    arch exactly and refuses one of another arch, naming the keys."""
    tiny, other = build(name), build(name, **TINY[name]['wrong'])
    paths = {}
    for key, model in (('tiny', tiny), ('other', other)):
        paths[key] = str(tmp_path / f'{key}.pth')
        torch.save({'state_dict': perturb(model).state_dict()}, paths[key])

    model = build(name, init_cfg=dict(type='Pretrained',
                                      checkpoint=paths['tiny']))
    model.init_weights()
    for k, v in tiny.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k

    missing = sorted(set(other.state_dict()) - set(tiny.state_dict()))
    unexpected = missing  # the same keys, loaded the other way round
    assert missing
    model = build(name, **TINY[name]['wrong'],
                  init_cfg=dict(type='Pretrained', checkpoint=paths['tiny']))
    with pytest.raises(RuntimeError, match='Missing key') as err:
        model.init_weights()
    assert paths['tiny'] in str(err.value) and missing[0] in str(err.value)
    model = build(name,
                  init_cfg=dict(type='Pretrained', checkpoint=paths['other']))
    with pytest.raises(RuntimeError, match='Unexpected key') as err:
        model.init_weights()
    assert unexpected[0] in str(err.value)


@pytest.mark.parametrize('name', NAMES)
def test_empty_batch_gives_empty_maps(name):
    model = build(name).eval()
    size = (61, 83)
    with torch.no_grad():
        expected = [(0, *o.shape[1:])
                    for o in maps_of(model(torch.randn(1, 3, *size)))]
    model.train()
    assert len(expected) >= 3
    x = torch.zeros(0, 3, *size, requires_grad=True)
    outs = maps_of(model(x))
    assert [tuple(o.shape) for o in outs] == expected
    assert all(o.dtype == torch.float32 for o in outs)
    # a loss on them backpropagates zeros to the input and every weight
    sum(o.sum() for o in outs).backward()
    assert x.grad is not None and x.grad.shape == x.shape
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and not g.any() for g in grads)


@pytest.mark.parametrize('name', NAMES)
def test_empty_batch_leaves_the_model_state_alone(name):
    model = build(name).train()
    flags = [m.training for m in model.modules()]
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    with torch.no_grad():
        outs = maps_of(model(torch.zeros(0, 3, 61, 83)))
    assert all(o.shape[0] == 0 and not o.requires_grad for o in outs)
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(torch.get_rng_state(), rng)
    for key, value in model.state_dict().items():
        assert torch.equal(value, buffers[key]), key
