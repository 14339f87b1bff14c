"""vitdense's ops under ``torch.autocast`` on CPU, alone and in the models
that use them (DINO, Relation-DETR, ViT-CoMer): inference close to fp32 and
a training step with autocast around the forward, as mmengine's
``AmpOptimWrapper`` does on GPUs (bf16 needs no loss scaling).
"""
import copy
import os.path as osp
import runpy
from contextlib import contextmanager

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from vitdense.ops import (MultiScaleDeformableAttention,
                          PositionRelationEmbedding, box_relation_bias,
                          multi_scale_deformable_attn)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_DINO = osp.join(REPO, 'tests', 'data', 'configs', 'tiny_dino_shapes.py')
RELATION = osp.join(REPO, 'configs', 'relation_detr',
                    'relation-detr_swin-nano_1xb8-shapes.py')
LOW = [torch.bfloat16, torch.float16]
# largest error relative to the largest output: a few roundings to the low
# dtype (eps 2**-8 for bf16, 2**-11 for fp16) of the inputs, fp32 arithmetic
TOL = {torch.bfloat16: 2e-2, torch.float16: 3e-3}


def msda_inputs(seed=0):
    generator = torch.Generator().manual_seed(seed)
    shapes = torch.tensor([[7, 5], [3, 2], [1, 1], [2, 6]])
    start = torch.tensor([0, 35, 41, 42])
    value = torch.randn(2, 54, 4, 8, generator=generator)
    locations = torch.rand(2, 9, 4, 4, 3, 2, generator=generator) * 1.2 - .1
    weights = torch.rand(2, 9, 4, 4, 3, generator=generator)
    return value, shapes, start, locations, weights


@pytest.mark.parametrize('low', LOW)
@pytest.mark.parametrize('low_args', ['value', 'locations_and_weights'])
def test_msda_mixed_dtypes_match_fp32(low_args, low):
    value, shapes, start, locations, weights = msda_inputs()
    expected = multi_scale_deformable_attn(value, shapes, start, locations,
                                           weights)
    if low_args == 'value':
        value = value.to(low)
    else:
        locations, weights = locations.to(low), weights.to(low)
    output = multi_scale_deformable_attn(value, shapes, start, locations,
                                         weights)
    assert output.dtype == value.dtype
    error = (output.float() - expected).abs().max() / expected.abs().max()
    assert error < TOL[low]


def test_msda_keeps_fp32_locations_exact_with_a_bf16_value():
    """Computed in fp32 on the given numbers, rounded once at the end (mmcv's
    CUDA function would round the locations to bf16 first)."""
    value, shapes, start, locations, weights = msda_inputs()
    value = value.bfloat16()
    output = multi_scale_deformable_attn(value, shapes, start, locations,
                                         weights)
    expected = multi_scale_deformable_attn(value.float(), shapes, start,
                                           locations, weights)
    assert torch.equal(output, expected.bfloat16())


@pytest.mark.parametrize('low', LOW)
def test_msda_module_under_autocast_matches_fp32(low):
    generator = torch.Generator().manual_seed(0)
    module = MultiScaleDeformableAttention(
        embed_dims=32, num_heads=4, num_levels=4, num_points=3,
        batch_first=True).eval()
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * .3)
    _, shapes, start, _, _ = msda_inputs()
    query = torch.randn(2, 9, 32, generator=generator)
    value = torch.randn(2, 54, 32, generator=generator)
    ref = torch.rand(2, 9, 4, 2, generator=generator)
    kwargs = dict(value=value, reference_points=ref, spatial_shapes=shapes,
                  level_start_index=start)
    expected = module(query, **kwargs)
    with torch.autocast('cpu', dtype=low):
        output = module(query, **kwargs)
    scale = expected.abs().max()
    assert ((output.float() - expected).abs().max() / scale) < 4 * TOL[low]


@pytest.mark.parametrize('low', LOW)
def test_relation_bias_with_low_precision_boxes_matches_fp32(low):
    generator = torch.Generator().manual_seed(0)
    boxes = torch.cat([
        torch.rand(2, 11, 2, generator=generator),
        torch.rand(2, 11, 2, generator=generator) * .4 + .05
    ], -1)
    module = PositionRelationEmbedding(16, 4)
    conv = module.pos_proj[0]
    rounded = boxes.to(low)
    output = box_relation_bias(rounded, rounded, conv.weight, conv.bias)
    assert output.dtype == torch.float32
    # computed in fp32 on the given boxes; the rounding of the boxes is all
    # that differs from fp32 boxes (amplified by the sines of scale=100
    # times log-ratios, as in the official model)
    torch.testing.assert_close(
        output, module(rounded.float()), rtol=1e-5, atol=1e-5)
    with torch.autocast('cpu', dtype=low):
        assert torch.isfinite(module(rounded)).all()


# ------------------------------------------------------------------ models


class CPUAmpOptimWrapper(OptimWrapper):
    """mmengine's ``AmpOptimWrapper`` on CPU: the forward under autocast,
    the backward and the step outside it (bf16 needs no loss scaling)."""

    def __init__(self, optimizer, dtype):
        super().__init__(optimizer)
        self.dtype = dtype

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast(
                'cpu', dtype=self.dtype):
            yield


@pytest.fixture(scope='module')
def detectors():
    """The tiny DINO of the tests (64x64, 1+2 layers, width 64), and the
    Relation-DETR demo config at the same size (skipped without mmdet, as
    on a bare GPU machine)."""
    pytest.importorskip('mmdet')
    relation = Config.fromfile(RELATION)
    relation.merge_from_dict(dict(model=runpy.run_path(TINY_DINO)['model']))
    import vitdense.models  # noqa: F401
    from mmdet.registry import MODELS
    models = {}
    for kind, cfg in (('dino', Config.fromfile(TINY_DINO).model),
                      ('relation', relation.model)):
        torch.manual_seed(0)
        with DefaultScope.overwrite_default_scope('mmdet'):
            models[kind] = MODELS.build(copy.deepcopy(cfg))
        models[kind].init_weights()
    return models


def detection_batch(with_gt=False):
    from mmdet.structures import DetDataSample
    generator = torch.Generator().manual_seed(1)
    inputs, samples = [], []
    for height, width in ((61, 64), (64, 53)):
        inputs.append(
            torch.randint(0, 256, (3, height, width), generator=generator,
                          dtype=torch.uint8))
        sample = DetDataSample(metainfo=dict(
            img_shape=(height, width), ori_shape=(height, width),
            scale_factor=(1., 1.)))
        if with_gt:
            sample.gt_instances = InstanceData(
                bboxes=torch.tensor([[4., 6., 30., 40.], [20., 10., 50.,
                                                          44.]]),
                labels=torch.tensor([0, 2]))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def encoder_memory(model, batch):
    """Predictions, and the encoder output (where every MSDA of the encoder
    has run) captured by a hook."""
    captured = []
    handle = model.encoder.register_forward_hook(
        lambda module, args, output: captured.append(output.float()))
    with torch.no_grad():
        predictions = model.test_step(batch)
    handle.remove()
    return predictions, captured[0]


@pytest.mark.parametrize('kind', ['dino', 'relation'])
def test_detector_inference_under_bf16_autocast_is_close_to_fp32(
        kind, detectors):
    model = copy.deepcopy(detectors[kind]).eval()
    batch = detection_batch()
    expected, memory = encoder_memory(model, batch)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        predicted, low_memory = encoder_memory(model, batch)
    assert ((low_memory - memory).abs().max() / memory.abs().max()) < 0.05
    for theirs, ours in zip(expected, predicted):
        ours, theirs = ours.pred_instances, theirs.pred_instances
        assert torch.isfinite(ours.bboxes).all()
        assert torch.isfinite(ours.scores).all()
        assert ours.bboxes.shape == theirs.bboxes.shape
        # bf16 may reorder near-equal scores: compare the best detection
        torch.testing.assert_close(
            ours.scores.float().max(), theirs.scores.max(), rtol=0,
            atol=0.02)


@pytest.mark.parametrize('kind', ['dino', 'relation'])
def test_detector_trains_a_step_under_bf16_autocast(kind, detectors):
    model = copy.deepcopy(detectors[kind]).train()
    before = [p.detach().clone() for p in model.parameters()]
    wrapper = CPUAmpOptimWrapper(
        torch.optim.AdamW(model.parameters(), lr=1e-3), torch.bfloat16)
    log_vars = model.train_step(detection_batch(with_gt=True), wrapper)
    assert torch.isfinite(log_vars['loss'])
    assert all(
        torch.isfinite(p).all() for p in model.parameters())
    changed = sum(not torch.equal(p, b)
                  for p, b in zip(model.parameters(), before))
    assert changed > 0.9 * len(before)


def tiny_vit_comer():
    pytest.importorskip('mmcv')
    from vitdense.models.backbones.vit_comer import ViTCoMer
    torch.manual_seed(0)
    return ViTCoMer(
        arch=dict(embed_dims=24, depth=4, num_heads=2, deform_num_heads=4,
                  deform_ratio=1.0,
                  interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]]),
        flavour='detection', pretrain_size=64, conv_inplane=8, n_points=2)


@pytest.mark.parametrize('low', LOW)
def test_vit_comer_under_autocast_is_close_to_fp32(low):
    model = tiny_vit_comer().eval()
    x = torch.randn(2, 3, 61, 75, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
        with torch.autocast('cpu', dtype=low):
            outputs = model(x)
    for out, ref in zip(outputs, expected):
        assert out.shape == ref.shape
        assert torch.isfinite(out).all()
        assert ((out.float() - ref).abs().max() / ref.abs().max()) < 0.05


def test_vit_comer_trains_a_step_under_bf16_autocast():
    model = tiny_vit_comer().train()
    wrapper = CPUAmpOptimWrapper(
        torch.optim.AdamW(model.parameters(), lr=1e-3), torch.bfloat16)
    x = torch.randn(2, 3, 61, 75, generator=torch.Generator().manual_seed(1))
    with wrapper.optim_context(model):
        loss = sum(out.float().square().mean() for out in model(x))
    assert torch.isfinite(loss)
    wrapper.backward(loss)
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), (
            name)
    wrapper.step()
