"""MonoDETR (the MonoDINO-DETR baseline): parity with the official model,
its converter, the official architecture, groups, and the mmdet detector
interface (loss with a frame without objects, predict, a few steps).

The fixture ``tests/data/monodetr/monodetr_tiny_official.pth`` is the
official model (ZrrSkywalker/MonoDETR 6994b9f) at reduced size; its README
says how it was made.
"""
import os.path as osp

import pytest
import torch
from _mono3d import (TINY_TRANSFORMER, assert_groups_stay_apart,
                     assert_loss_and_predict, assert_matches_official,
                     assert_training_lowers_the_loss, build_model)
from mmengine.registry import init_default_scope

FIXTURE = 'tests/data/monodetr/monodetr_tiny_official.pth'


def tiny_cfg(**overrides) -> dict:
    """The fixture's reduced official setting (see its README)."""
    cfg = dict(
        type='MonoDETR',
        backbone=dict(
            type='ResNet',
            depth=50,
            base_channels=4,
            out_indices=(1, 2, 3),
            frozen_stages=1,
            norm_cfg=dict(type='BN', requires_grad=False),
            norm_eval=True,
            style='pytorch',
            zero_init_residual=False),
        neck=dict(
            type='ChannelMapper',
            in_channels=[32, 64, 128],
            out_channels=64,
            kernel_size=1,
            act_cfg=None,
            bias=True,
            norm_cfg=dict(type='GN', num_groups=32),
            num_outs=4),
        **TINY_TRANSFORMER)
    cfg.update(overrides)
    return cfg


def build(**overrides):
    return build_model(tiny_cfg(**overrides))


def official_state_dict(repo_root) -> dict:
    return torch.load(
        osp.join(repo_root, FIXTURE), weights_only=True)['state_dict']


def test_monodetr_matches_official_model(repo_root):
    """Converted official weights, loaded strictly: the official inputs, and
    the raw images through the data preprocessor with calibs and sizes from
    the data samples, give the official outputs of every layer."""
    from vitdense.converters import convert_monodetr
    fixture = torch.load(osp.join(repo_root, FIXTURE), weights_only=True)
    assert_matches_official(
        build(), fixture, convert_monodetr, height=77, width=253)


def test_converter_maps_resnet_neck_and_refuses_other_layouts(repo_root):
    from vitdense.converters import convert_monodetr
    from vitdense.converters.io import CheckpointLayoutError
    official = official_state_dict(repo_root)
    converted = convert_monodetr({'model_state': official, 'epoch': 3})
    # torchvision ResNet names are mmdet's; FrozenBatchNorm2d has no counter
    torch.testing.assert_close(converted['backbone.layer2.0.conv2.weight'],
                               official['backbone.0.body.layer2.0.conv2.'
                                        'weight'])
    assert converted['backbone.bn1.num_batches_tracked'] == 0
    # input_proj 0-2 (1x1) -> convs, 3 (3x3 stride 2) -> extra_convs
    assert converted['neck.convs.2.conv.weight'].shape[-1] == 1
    assert converted['neck.extra_convs.0.conv.weight'].shape == (64, 128, 3,
                                                                 3)
    torch.testing.assert_close(converted['neck.extra_convs.0.gn.bias'],
                               official['input_proj.3.1.bias'])
    torch.testing.assert_close(converted['query_embedding.weight'],
                               official['query_embed.weight'])
    assert not any(
        'sa_' in k or 'label_enc' in k or 'ref_point_head' in k
        or 'query_scale' in k or 'depth_bin_values' in k for k in converted)

    with pytest.raises(CheckpointLayoutError, match='query_embed.weight'):
        convert_monodetr({'tgt_embed.weight': torch.zeros(1)})
    extra = dict(official, **{'depth_predictor.new.weight': torch.zeros(1)})
    with pytest.raises(CheckpointLayoutError,
                       match='depth_predictor.new.weight'):
        convert_monodetr(extra)


def test_converter_tool_output_loads_strictly(repo_root, tmp_path):
    """tools/model_converters/monodetr2vitdense.py on the trainer's file
    layout writes ``{'state_dict': ...}`` that loads with strict=True."""
    from tools.model_converters.monodetr2vitdense import convert
    src, dst = str(tmp_path / 'official.pth'), str(tmp_path / 'out.pth')
    torch.save({'model_state': {
        k: v.float() for k, v in official_state_dict(repo_root).items()},
                'epoch': 195}, src)
    convert(src, dst)
    converted = torch.load(dst, weights_only=True)['state_dict']
    model = build()
    assert set(converted) == set(model.state_dict())
    model.load_state_dict(converted, strict=True)


def test_default_is_the_official_architecture():
    """``MonoDETR()`` is configs/monodetr.yaml's network: ResNet-50 stages
    2-4 + one stride-2 level at width 256, the depth predictor on the
    levels, 50 x 11 Deformable-DETR queries (no DAB heads)."""
    init_default_scope('mmdet')
    import vitdense.models  # noqa: F401
    from vitdense.models.layers import MonoDETRDepthPredictor
    from vitdense.registry import MODELS
    model = MODELS.build(dict(type='MonoDETR'))
    assert model.backbone.depth == 50 and model.backbone.out_indices == (1, 2,
                                                                         3)
    assert [c.conv.in_channels for c in model.neck.convs] == [512, 1024, 2048]
    assert len(model.neck.extra_convs) == 1 and model.num_levels == 4
    assert isinstance(model.depth_predictor, MonoDETRDepthPredictor)
    assert model.query_embedding.weight.shape == (550, 512)
    assert model.reference_points.out_features == 2
    assert not hasattr(model.decoder, 'ref_point_head')
    assert not hasattr(model, 'anchor_embedding')
    # stem and stage 1 frozen, BN statistics fixed (FrozenBatchNorm2d)
    assert not any(p.requires_grad for p in model.backbone.layer1.parameters())
    assert all(p.requires_grad for p in model.backbone.layer2[0].conv1
               .parameters())
    assert model.backbone.norm_eval


def test_decoder_without_dab_needs_positional_queries():
    from vitdense.models.layers import DepthAwareDecoder
    decoder = DepthAwareDecoder(
        1, dict(embed_dims=32, num_heads=4, feedforward_channels=32,
                num_levels=1, num_points=2), use_dab=False)
    with pytest.raises(ValueError, match='needs query_pos'):
        decoder(
            torch.zeros(1, 2, 32), torch.full((1, 2, 2), 0.5),
            torch.zeros(1, 12, 32), torch.zeros(1, 12, 32),
            torch.tensor([[3, 4]]), torch.tensor([0]), None, None)


def test_training_runs_all_groups_eval_the_first():
    """Training decodes num_queries x num_groups queries, eval only the
    first group with the same result for it; groups never mix."""
    eval_out = assert_groups_stay_apart(
        build(dropout=0.0), dict(query_embedding=1.0))
    # 47x75 -> stride 16 of the ResNet: 3x5 depth map
    assert eval_out['pred_depth_map_logits'].shape == (2, 81, 3, 5)


def test_loss_and_predict_through_the_detector_interface():
    """``loss`` trains every decoder layer, the query pairs and ResNet
    stages 2-4 (a frame without objects too), not the frozen stem;
    ``predict`` sets camera-frame ``pred_instances_3d`` in front of the
    camera."""
    model = build(criterion=dict(test_cfg=dict(score_thr=0.0, topk=5)))
    pred = assert_loss_and_predict(model)
    assert model.reference_points.weight.grad.abs().sum() > 0
    assert model.backbone.layer4[0].conv1.weight.grad.abs().sum() > 0
    assert model.backbone.conv1.weight.grad is None
    assert (pred.bboxes_3d[:, 2] > 0).all()


def test_a_few_training_steps_lower_the_loss():
    """AdamW at the official lr on one batch, one image without objects:
    the total loss of all layers falls step by step."""
    assert_training_lowers_the_loss(build(dropout=0.0))
