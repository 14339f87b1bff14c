"""MonoDINO-DETR: parity with the official model, group-wise queries, odd
input sizes, outputs, and the mmdet detector interface.

The fixture ``tests/data/monodino_detr/monodino_detr_tiny_official.pth`` is
the official model (JihyeokKim/MonoDINO-DETR 65004cc) at reduced size; its
README says how it was made.
"""
import os.path as osp

import pytest
import torch
from _mono3d import (OUTPUT_KEYS, TINY_TRANSFORMER, assert_groups_stay_apart,
                     assert_loss_and_predict, assert_matches_official,
                     assert_training_lowers_the_loss, build_model, sample)

FIXTURE = 'tests/data/monodino_detr/monodino_detr_tiny_official.pth'


def tiny_cfg(**overrides) -> dict:
    """The fixture's reduced official setting (see its README)."""
    cfg = dict(
        type='MonoDINODETR',
        backbone=dict(
            type='DepthAnythingV2',
            arch=dict(
                embed_dims=64,
                depth=4,
                num_heads=4,
                out_indices=(0, 1, 2, 3),
                dpt_features=16,
                dpt_channels=(16, 32, 32, 64)),
            img_size=126,
            input_size=126),
        **TINY_TRANSFORMER)
    cfg.update(overrides)
    return cfg


def build(**overrides):
    return build_model(tiny_cfg(**overrides))


def test_monodino_detr_matches_official_model(repo_root):
    """Converted official weights: the official inputs, and the raw images
    through the data preprocessor with calibs and sizes from the data
    samples, give the official outputs. Both run in float64: this tiny
    random model amplifies rounding, so the official float32 run is itself
    1.5e-4 off its float64 run (tests/data/monodino_detr/README.md)."""
    from vitdense.converters.monodino_detr import convert_monodino_detr
    fixture = torch.load(osp.join(repo_root, FIXTURE), weights_only=True)
    assert_matches_official(build(), fixture, convert_monodino_detr,
                            dtype=torch.float64)


def test_converter_refuses_other_layouts_and_unknown_keys(repo_root):
    from vitdense.converters.io import CheckpointLayoutError
    from vitdense.converters.monodino_detr import convert_monodino_detr
    official = torch.load(
        osp.join(repo_root, FIXTURE), weights_only=True)['state_dict']
    with pytest.raises(CheckpointLayoutError, match='tgt_embed.weight'):
        convert_monodino_detr({'backbone.0.weight': torch.zeros(1)})
    extra = dict(official, **{'depthaware_transformer.new.weight':
                              torch.zeros(1)})
    with pytest.raises(CheckpointLayoutError,
                       match='depthaware_transformer.new.weight'):
        convert_monodino_detr(extra)
    # the trainer's file layout is unwrapped
    converted = convert_monodino_detr({'model_state': official, 'epoch': 3})
    assert 'decoder.layers.0.self_attn.attn.in_proj_weight' in converted
    assert not any('sa_' in k or 'label_enc' in k for k in converted)


def test_group_wise_self_attention_keeps_groups_apart():
    """Changing group 2's queries changes group 2's outputs only."""
    from vitdense.models.layers import DepthAwareDecoderLayer
    torch.manual_seed(0)
    layer = DepthAwareDecoderLayer(
        embed_dims=32, num_heads=4, feedforward_channels=32, num_levels=1,
        num_points=2).eval()
    groups, per_group, bs = 3, 5, 2
    query = torch.randn(bs, groups * per_group, 32)
    query_pos = torch.randn_like(query)
    depth_embed = torch.randn(bs, 12, 32)
    value = torch.randn(bs, 12, 32)
    boxes = torch.rand(bs, groups * per_group, 1, 4) * 0.5 + 0.25
    shapes = torch.tensor([[3, 4]])
    start = torch.tensor([0])

    def run(q):
        return layer(q, query_pos, depth_embed, value, boxes, shapes, start,
                     num_groups=groups)

    changed = query.clone()
    changed[:, 2 * per_group:] += torch.randn(bs, per_group, 32)
    with torch.no_grad():
        before, after = run(query), run(changed)
        together = layer(query, query_pos, depth_embed, value, boxes, shapes,
                         start, num_groups=1)
    assert torch.equal(before[:, :2 * per_group], after[:, :2 * per_group])
    assert (before[:, 2 * per_group:] - after[:, 2 * per_group:]).abs().max(
    ) > 1e-3
    # one group of all queries is a different attention
    assert (before - together).abs().max() > 1e-3
    with pytest.raises(ValueError, match='do not split into 4 groups'):
        layer(query, query_pos, depth_embed, value, boxes, shapes, start,
              num_groups=4)


def test_training_runs_all_groups_eval_the_first():
    """Training decodes num_queries x num_groups queries, eval only the
    first group, with the same result for it; groups never mix."""
    assert_groups_stay_apart(
        build(dropout=0.0),
        dict(query_embedding=1.0, anchor_embedding=0.5))


@pytest.mark.parametrize('hw, input_size', [((61, 187), 126),
                                             ((15, 71), 126),
                                             ((33, 29), None)])
def test_odd_input_sizes_give_official_outputs(hw, input_size):
    """Any input size runs, resized to the ViT input as the official or only
    padded to a multiple of 14; keys and shapes of the official dict."""
    backbone = tiny_cfg()['backbone']
    backbone['input_size'] = input_size
    model = build(backbone=backbone).eval()
    bs, num_layers = 2, 3
    calibs = torch.tensor(sample().metainfo['ori_cam2img']).expand(bs, 3, 4)
    with torch.no_grad():
        out = model.forward_outputs(
            torch.randn(bs, 3, *hw), calibs, torch.tensor([[1242, 375]] * 2))
    grid = (9, 9) if input_size else tuple(-(-s // 14) for s in hw)
    assert set(out) == set(OUTPUT_KEYS) | {'pred_depth_map_logits',
                                           'aux_outputs'}
    assert out['pred_depth_map_logits'].shape == (bs, 81, *grid)
    assert len(out['aux_outputs']) == num_layers - 1
    widths = dict(pred_logits=3, pred_boxes=6, pred_3d_dim=3, pred_angle=24,
                  pred_depth=2)
    for layer in out['aux_outputs'] + [out]:
        assert set(layer) >= set(OUTPUT_KEYS)
        for key, width in widths.items():
            assert layer[key].shape == (bs, 10, width), key
            assert torch.isfinite(layer[key]).all(), key
        assert ((layer['pred_boxes'] > 0) & (layer['pred_boxes'] < 1)).all()


def test_loss_and_predict_through_the_detector_interface():
    """``loss`` trains every decoder layer (frames without objects too) and
    leaves the frozen backbone alone; ``predict`` sets camera-frame
    ``pred_instances_3d``."""
    model = build(criterion=dict(test_cfg=dict(score_thr=0.0, topk=5)))
    assert_loss_and_predict(model)
    assert all(p.grad is None for p in model.backbone.parameters())


def test_a_few_training_steps_lower_the_loss():
    """AdamW at the official lr on one batch, one image without objects:
    the total loss of all layers falls step by step."""
    assert_training_lowers_the_loss(build(dropout=0.0))
