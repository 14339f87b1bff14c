"""Helpers shared by the MonoDINO-DETR and MonoDETR tests (one detector
class configured two ways): KITTI data samples, the official comparison,
and the group, loss and training checks both models must pass."""
from typing import Callable, Dict

import torch
from mmdet.structures import DetDataSample
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

OUTPUT_KEYS = ('pred_logits', 'pred_boxes', 'pred_3d_dim', 'pred_angle',
               'pred_depth')
#: the transformer of both official fixtures (their READMEs), reduced, and
#: the official ImageNet normalisation ((x / 255 - mean) / std) in 0-255 units
TINY_TRANSFORMER = dict(
    num_classes=3,
    embed_dims=64,
    num_heads=8,
    feedforward_channels=64,
    num_queries=10,
    num_groups=3,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True))


def build_model(cfg: dict):
    """``cfg`` built in the mmdet scope after ``torch.manual_seed(0)``."""
    init_default_scope('mmdet')
    import vitdense.models  # noqa: F401
    from vitdense.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(cfg)


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


def assert_matches_official(model, fixture: dict, convert: Callable,
                            dtype: torch.dtype = torch.float32,
                            **sample_kwargs) -> None:
    """``fixture['state_dict']`` through ``convert``, loaded strictly: the
    official inputs, and the raw images through the data preprocessor with
    calibs and sizes from the data samples (``sample(**sample_kwargs)``),
    give the official outputs, the model run in ``dtype`` (the official
    outputs' precision)."""
    state_dict = convert(
        {k: v.float() for k, v in fixture['state_dict'].items()})
    model.load_state_dict(state_dict, strict=True)
    model.eval().to(dtype)
    with torch.no_grad():
        assert_official(
            model.forward_outputs(fixture['images'].to(dtype),
                                  fixture['calibs'].to(dtype),
                                  fixture['img_sizes']), fixture)

    samples = []
    for calib, (width, height) in zip(fixture['calibs'],
                                      fixture['img_sizes'].tolist()):
        data_sample = sample(ori_shape=(height, width), **sample_kwargs)
        data_sample.set_metainfo(dict(ori_cam2img=calib.numpy()))
        samples.append(data_sample)
    bgr = [img.flip(0) for img in fixture['raw_images']]  # as cv2 reads
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(inputs=bgr, data_samples=samples), False)
        torch.testing.assert_close(
            data['inputs'], fixture['images'].to(dtype), atol=1e-6, rtol=0)
        assert_official(
            model(data['inputs'], data['data_samples'], mode='tensor'),
            fixture)


def assert_groups_stay_apart(model, shifts: Dict[str, float]) -> dict:
    """A 10 x 3-group model: training decodes all 30 queries, eval only the
    first group with the same result for it, and shifting the embeddings
    named in ``shifts`` (``{attribute: delta}``) from query 20 on changes
    group 3 only. Returns the eval outputs."""
    images = torch.randn(2, 3, 47, 75)
    calibs = torch.tensor(sample().metainfo['ori_cam2img']).expand(2, 3, 4)
    sizes = torch.tensor([[1242., 375.], [1242., 375.]])
    with torch.no_grad():
        model.train()
        train_out = model.forward_outputs(images, calibs, sizes)
        for name, delta in shifts.items():
            getattr(model, name).weight[20:] += delta
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
    return eval_out


def training_batch(model) -> tuple:
    """A random 61x187 image and the preprocessed training batch of it and
    its mirror image, with 2 and no objects."""
    images = torch.randint(0, 256, (3, 61, 187), dtype=torch.uint8)
    data = model.data_preprocessor(
        dict(inputs=[images, images.flip(-1)],
             data_samples=[sample(num_gt=2), sample(num_gt=0)]), True)
    return images, data


def assert_loss_and_predict(model) -> InstanceData:
    """``loss`` (a frame without objects too) reaches the first decoder
    layer and the later query groups; ``predict`` gives the top-5
    ``pred_instances_3d``, which are returned."""
    model.init_weights()
    model.train()
    images, data = training_batch(model)
    losses = model(**data, mode='loss')
    assert {'loss_cls', 'loss_bbox', 'loss_depth', 'loss_depth_map',
            'd0.loss_cls'} <= set(losses)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert model.decoder.layers[0].self_attn.attn.in_proj_weight.grad.abs(
    ).sum() > 0
    assert model.query_embedding.weight.grad[20:].abs().sum() > 0

    model.eval()
    data = model.data_preprocessor(
        dict(inputs=[images], data_samples=[sample()]), False)
    with torch.no_grad():
        results = model(**data, mode='predict')
    pred = results[0].pred_instances_3d
    assert pred.bboxes_3d.shape == (5, 7)
    assert pred.scores_3d.shape == (5, ) and pred.labels_3d.shape == (5, )
    return pred


def training_totals(model, data: dict, steps: int) -> list:
    """The total loss (all layers) of each of ``steps`` AdamW steps at the
    official lr and weight decay on the one batch ``data``."""
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=2e-4,
        weight_decay=1e-4)
    totals = []
    for _ in range(steps):
        losses = model(**data, mode='loss')
        total = sum(v for k, v in losses.items() if 'loss' in k)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    return totals


def assert_training_lowers_the_loss(model) -> None:
    """Five AdamW steps on one batch (:func:`training_batch`) after the
    model's own initialisation: the total loss falls step by step, by 10 %
    at least."""
    model.init_weights()
    model.train()
    _, data = training_batch(model)
    totals = training_totals(model, data, steps=5)
    assert all(b < a for a, b in zip(totals, totals[1:])), totals
    assert totals[-1] < 0.9 * totals[0], totals
