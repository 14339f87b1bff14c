"""MonoDINO-DETR: parity with the official model, group-wise queries, odd
input sizes, outputs, and the mmdet detector interface.

The fixture ``tests/data/monodino_detr/monodino_detr_tiny_official.pth`` is
the official model (JihyeokKim/MonoDINO-DETR 65004cc) at reduced size; its
README says how it was made.
"""
import os.path as osp

import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

FIXTURE = 'tests/data/monodino_detr/monodino_detr_tiny_official.pth'
OUTPUT_KEYS = ('pred_logits', 'pred_boxes', 'pred_3d_dim', 'pred_angle',
               'pred_depth')
#: official ImageNet normalisation ((x / 255 - mean) / std) in 0-255 units
PREPROCESSOR = dict(
    type='DetDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True)


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
        num_classes=3,
        embed_dims=64,
        num_heads=8,
        feedforward_channels=64,
        num_queries=10,
        num_groups=3,
        data_preprocessor=PREPROCESSOR)
    cfg.update(overrides)
    return cfg


def build(**overrides):
    init_default_scope('mmdet')
    import vitdense.models  # noqa: F401
    from vitdense.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(tiny_cfg(**overrides))


def sample(height: int = 61, width: int = 187, ori_shape=(375, 1242),
           num_gt: int = 0) -> DetDataSample:
    """A data sample with the KITTI contract's metainfo (and ``num_gt``
    plausible cars)."""
    p2 = torch.tensor([[721.5377, 0., 609.5593, 44.85728],
                       [0., 721.5377, 172.854, 0.2163791],
                       [0., 0., 1., 0.002745884]])
    scale = torch.tensor([[width / ori_shape[1]], [height / ori_shape[0]],
                          [1.]])
    trans = torch.diag(torch.tensor([width / ori_shape[1],
                                     height / ori_shape[0], 1.]))
    data_sample = DetDataSample(
        metainfo=dict(
            img_shape=(height, width),
            ori_shape=ori_shape,
            pad_shape=(height, width),
            cam2img=(p2 * scale).numpy(),
            ori_cam2img=p2.numpy(),
            trans_mat=trans.numpy()))
    gt_3d = InstanceData()
    gt_2d = InstanceData()
    boxes_3d = torch.tensor([[-3.0 + 2 * i, 1.6, 12.0 + 5 * i, 3.9, 1.5, 1.6,
                              0.3 * i] for i in range(num_gt)]).view(-1, 7)
    centres = []
    for box in boxes_3d:
        centre = p2 @ torch.cat([box[:3] - box.new_tensor([0, box[4] / 2, 0]),
                                 box.new_ones(1)])
        centres.append(centre[:2] / centre[2] * scale[:2, 0])
    centres = torch.stack(centres) if centres else torch.zeros(0, 2)
    half = torch.tensor([[8., 5.]]).expand(num_gt, 2)
    gt_3d.bboxes_3d = boxes_3d
    gt_3d.labels_3d = torch.zeros(num_gt, dtype=torch.long)
    gt_3d.centers_2d = centres
    gt_3d.depths = boxes_3d[:, 2].clone()
    gt_2d.bboxes = torch.cat([centres - half, centres + half], -1)
    gt_2d.labels = torch.zeros(num_gt, dtype=torch.long)
    data_sample.gt_instances_3d = gt_3d
    data_sample.gt_instances = gt_2d
    return data_sample


def assert_official(out: dict, fixture: dict) -> None:
    """Every output of every decoder layer within 1e-4 of the official."""
    layers = out['aux_outputs'] + [out]
    for key in OUTPUT_KEYS:
        got = torch.stack([layer[key] for layer in layers])
        assert got.shape == fixture[key].shape, key
        assert (got - fixture[key]).abs().max() <= 1e-4, key
    assert (out['pred_depth_map_logits'] -
            fixture['pred_depth_map_logits']).abs().max() <= 1e-4


def test_monodino_detr_matches_official_model(repo_root):
    """Converted official weights: the official inputs, and the raw images
    through the data preprocessor with calibs and sizes from the data
    samples, give the official outputs."""
    from vitdense.converters.monodino_detr import convert_monodino_detr
    fixture = torch.load(osp.join(repo_root, FIXTURE), weights_only=True)
    model = build()
    state_dict = convert_monodino_detr(
        {k: v.float() for k, v in fixture['state_dict'].items()})
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    with torch.no_grad():
        assert_official(
            model.forward_outputs(fixture['images'], fixture['calibs'],
                                  fixture['img_sizes']), fixture)

    samples = []
    for calib, (width, height) in zip(fixture['calibs'],
                                      fixture['img_sizes'].tolist()):
        data_sample = sample(ori_shape=(height, width))
        data_sample.set_metainfo(dict(ori_cam2img=calib.numpy()))
        samples.append(data_sample)
    bgr = [img.flip(0) for img in fixture['raw_images']]  # as cv2 reads
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(inputs=bgr, data_samples=samples), False)
        torch.testing.assert_close(
            data['inputs'], fixture['images'], atol=1e-6, rtol=0)
        assert_official(
            model(data['inputs'], data['data_samples'], mode='tensor'),
            fixture)


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
    model = build(dropout=0.0)
    images = torch.randn(2, 3, 47, 75)
    calibs = torch.tensor(sample().metainfo['ori_cam2img']).expand(2, 3, 4)
    sizes = torch.tensor([[1242., 375.], [1242., 375.]])
    with torch.no_grad():
        model.train()
        train_out = model.forward_outputs(images, calibs, sizes)
        model.query_embedding.weight[20:] += 1.0
        model.anchor_embedding.weight[20:] += 0.5
        changed = model.forward_outputs(images, calibs, sizes)
        model.eval()
        eval_out = model.forward_outputs(images, calibs, sizes)
    assert train_out['pred_logits'].shape == (2, 30, 3)
    assert eval_out['pred_logits'].shape == (2, 10, 3)
    for key in OUTPUT_KEYS:
        torch.testing.assert_close(eval_out[key], train_out[key][:, :10])
        torch.testing.assert_close(changed[key][:, :20],
                                   train_out[key][:, :20])
        assert (changed[key][:, 20:] - train_out[key][:, 20:]).abs().max() > 0


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
    model.init_weights()
    model.train()
    images = torch.randint(0, 256, (3, 61, 187), dtype=torch.uint8)
    data = model.data_preprocessor(
        dict(inputs=[images, images.flip(-1)],
             data_samples=[sample(num_gt=2), sample(num_gt=0)]), True)
    losses = model(**data, mode='loss')
    assert {'loss_cls', 'loss_bbox', 'loss_depth', 'loss_depth_map',
            'd0.loss_cls'} <= set(losses)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert model.decoder.layers[0].self_attn.attn.in_proj_weight.grad.abs(
    ).sum() > 0
    assert model.query_embedding.weight.grad[20:].abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.parameters())

    model.eval()
    data = model.data_preprocessor(
        dict(inputs=[images], data_samples=[sample()]), False)
    with torch.no_grad():
        results = model(**data, mode='predict')
    pred = results[0].pred_instances_3d
    assert pred.bboxes_3d.shape == (5, 7)
    assert pred.scores_3d.shape == (5, ) and pred.labels_3d.shape == (5, )


def test_a_few_training_steps_lower_the_loss():
    """AdamW at the official lr on one batch, one image without objects:
    the total loss of all layers falls step by step."""
    model = build(dropout=0.0)
    model.init_weights()
    model.train()
    images = torch.randint(0, 256, (3, 61, 187), dtype=torch.uint8)
    data = model.data_preprocessor(
        dict(inputs=[images, images.flip(-1)],
             data_samples=[sample(num_gt=2), sample(num_gt=0)]), True)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=2e-4,
        weight_decay=1e-4)
    totals = []
    for _ in range(5):
        losses = model(**data, mode='loss')
        total = sum(v for k, v in losses.items() if 'loss' in k)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert all(b < a for a, b in zip(totals, totals[1:])), totals
    assert totals[-1] < 0.9 * totals[0], totals
