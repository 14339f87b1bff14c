"""mmdet's DINO with vitdense's MultiScaleDeformableAttention swapped in.

A tiny variant of mmdet's ``configs/dino/dino-4scale_r50_8xb2-12e_coco.py``
(ResNet-18 from scratch, 1 encoder / 2 decoder layers, 10 queries, 64x64
images) keeps the test fast on CPU; embed_dims stays 256 because mmdet 3.3's
DINO decoder hard-codes it (vitdense's ``AnyWidthDINO`` lifts that and is
checked here to be this model at 256).
"""
import copy
import os

import pytest
import torch

mmdet = pytest.importorskip('mmdet')
mmcv_ops = pytest.importorskip('mmcv.ops')

from mmengine.config import Config  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402

from vitdense.ops import (MultiScaleDeformableAttention,  # noqa: E402
                          convert_mmcv_msda)

DINO_CONFIG = os.path.join(
    os.path.dirname(mmdet.__file__), '.mim', 'configs', 'dino',
    'dino-4scale_r50_8xb2-12e_coco.py')


def tiny_dino_cfg():
    cfg = Config.fromfile(DINO_CONFIG).model
    cfg.num_queries = 10
    cfg.backbone.update(depth=18, init_cfg=None, frozen_stages=-1)
    cfg.neck.in_channels = [128, 256, 512]
    cfg.encoder.num_layers = 1
    cfg.decoder.num_layers = 2
    cfg.encoder.layer_cfg.ffn_cfg.feedforward_channels = 64
    cfg.decoder.layer_cfg.ffn_cfg.feedforward_channels = 64
    cfg.bbox_head.num_classes = 3
    cfg.dn_cfg.group_cfg.num_dn_queries = 6
    cfg.test_cfg.max_per_img = 10
    return cfg


def batch(with_gt: bool):
    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for height, width in ((64, 64), (48, 64)):
        inputs.append(
            torch.randint(0, 256, (3, height, width), generator=generator,
                          dtype=torch.uint8))
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(height, width),
                ori_shape=(height, width),
                scale_factor=(1.0, 1.0)))
        if with_gt:
            sample.gt_instances = InstanceData(
                bboxes=torch.tensor([[4., 6., 30., 40.],
                                     [20., 10., 60., 44.]]),
                labels=torch.tensor([0, 2]))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


@pytest.fixture(scope='module')
def stock_dino():
    register_all_modules()
    torch.manual_seed(0)
    return MODELS.build(tiny_dino_cfg())


def count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


def test_dino_predicts_identically_with_vitdense_msda(stock_dino):
    stock = stock_dino.eval()
    ours = convert_mmcv_msda(copy.deepcopy(stock))
    assert count(ours, mmcv_ops.MultiScaleDeformableAttention) == 0
    assert count(ours, MultiScaleDeformableAttention) == 3  # 1 enc + 2 dec
    with torch.no_grad():
        expected = stock.test_step(batch(with_gt=False))
        predicted = ours.test_step(batch(with_gt=False))
    for theirs, mine in zip(expected, predicted):
        torch.testing.assert_close(
            mine.pred_instances.bboxes,
            theirs.pred_instances.bboxes,
            rtol=1e-4,
            atol=1e-4)
        torch.testing.assert_close(
            mine.pred_instances.scores,
            theirs.pred_instances.scores,
            rtol=1e-4,
            atol=1e-5)
        assert torch.equal(mine.pred_instances.labels,
                           theirs.pred_instances.labels)


def test_dino_trains_one_iteration_with_vitdense_msda(stock_dino):
    model = convert_mmcv_msda(copy.deepcopy(stock_dino)).train()
    attention = next(m for m in model.modules()
                     if isinstance(m, MultiScaleDeformableAttention))
    before = attention.value_proj.weight.detach().clone()
    optim_wrapper = OptimWrapper(
        torch.optim.AdamW(model.parameters(), lr=1e-3))
    log_vars = model.train_step(batch(with_gt=True), optim_wrapper)
    assert torch.isfinite(log_vars['loss'])
    assert not torch.equal(attention.value_proj.weight, before)


def test_any_width_dino_at_width_256_is_mmdet_dino(stock_dino):
    """vitdense's one DINO width fix changes nothing at width 256: same
    parameter names and shapes, mmdet's weights load strictly, same
    predictions and losses."""
    from vitdense.models.detectors import AnyWidthDINO
    stock = copy.deepcopy(stock_dino)
    cfg = tiny_dino_cfg().to_dict()
    del cfg['type']
    ours = AnyWidthDINO(**cfg)
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in stock.state_dict().items()}
    ours.load_state_dict(stock.state_dict(), strict=True)
    assert count(ours, mmcv_ops.MultiScaleDeformableAttention) == 0

    stock.eval()
    ours.eval()
    with torch.no_grad():
        expected = stock.test_step(batch(with_gt=False))
        predicted = ours.test_step(batch(with_gt=False))
    for theirs, mine in zip(expected, predicted):
        torch.testing.assert_close(
            mine.pred_instances.bboxes, theirs.pred_instances.bboxes,
            rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(
            mine.pred_instances.scores, theirs.pred_instances.scores,
            rtol=1e-4, atol=1e-5)

    stock.train()
    ours.train()
    data = stock.data_preprocessor(batch(with_gt=True), True)
    losses = []
    for model in (stock, ours):
        torch.manual_seed(1)  # the same denoising queries
        losses.append(model.loss(data['inputs'], data['data_samples']))
    assert losses[0].keys() == losses[1].keys()
    for key, value in losses[0].items():
        torch.testing.assert_close(
            losses[1][key], value, rtol=1e-4, atol=1e-5, msg=key)
