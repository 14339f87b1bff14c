"""The MonoDINO-DETR configs: the official KITTI setting as the official
yaml states it, and the tiny config on the embedded KITTI data through its
own pipeline: a few training steps lower the loss, and inference on frames
of an odd size gives camera-frame boxes in front of the camera whose
projected centres lie inside the image."""
import os.path as osp

import numpy as np
import pytest
import torch
from _mono3d import training_totals
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

OFFICIAL = 'configs/monodino_detr/monodino-detr_vitb_4xb2-195e_kitti-mono3d.py'
TINY = 'configs/monodino_detr/monodino-detr_vit-nano_1xb4-kitti-shapes.py'


def _config(repo_root: str, path: str) -> Config:
    return Config.fromfile(osp.join(repo_root, path))


def test_official_config_states_the_official_setting(repo_root):
    """JihyeokKim/MonoDINO-DETR configs/monodinodetr.yaml + README."""
    cfg = _config(repo_root, OFFICIAL)
    model = cfg.model
    assert model.backbone.type == 'DepthAnythingV2'
    assert (model.backbone.arch, model.backbone.input_size) == ('vitb', 518)
    assert model.backbone.frozen is True
    assert model.backbone.init_cfg.checkpoint.endswith(
        'depth_anything_v2_vitb.pth')
    assert (model.num_queries, model.num_groups) == (50, 11)
    assert (model.embed_dims, model.feedforward_channels, model.num_heads,
            model.dropout) == (256, 256, 8, 0.1)
    assert (model.num_encoder_layers, model.num_decoder_layers) == (3, 3)
    assert model.data_preprocessor.bgr_to_rgb is True
    assert model.criterion.test_cfg == dict(topk=50, score_thr=0.2)
    train = cfg.train_dataloader
    assert train.dataset.split == 'train'
    assert cfg.val_dataloader.dataset.split == 'val'
    assert train.dataset.metainfo.classes == ('Car', )
    assert model.num_classes == 1
    affine = [t for t in train.dataset.pipeline if t.type == 'Mono3DAffine']
    assert affine[0].input_size == (1280, 384)
    assert train.batch_size * 4 == cfg.auto_scale_lr.base_batch_size == 8
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == (
        'AdamW', 2e-4, 1e-4)
    assert cfg.train_cfg.max_epochs == 195
    assert cfg.param_scheduler[0].milestones == [125, 165]
    assert cfg.default_hooks.checkpoint.save_best == \
        'kitti/Car_3D_moderate_R40'
    assert cfg.randomness.seed == 444


@pytest.fixture(scope='module')
def tiny_model_and_losses(repo_root, tmp_path_factory):
    """The tiny config's model after 4 AdamW steps on one batch of 4 frames
    of the embedded data through the config's training pipeline; the total
    losses of the steps."""
    from vitdense.datasets.synthetic import make_kitti_shapes
    from vitdense.registry import DATASETS, MODELS
    from vitdense.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    init_default_scope('mmdet')
    root = make_kitti_shapes(
        str(tmp_path_factory.mktemp('kitti')), num_train=4, num_val=2, seed=3)
    cfg = _config(repo_root, TINY)
    cfg.train_dataloader.dataset.data_root = root
    torch.manual_seed(0)
    np.random.seed(0)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    batch = pseudo_collate([dataset[i] for i in range(4)])
    assert sum(len(s.gt_instances_3d) for s in batch['data_samples']) > 0
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    totals = training_totals(
        model, model.data_preprocessor(batch, True), steps=4)
    return model, totals


def test_tiny_config_trains_its_backbone_and_lowers_the_loss(
        tiny_model_and_losses):
    model, totals = tiny_model_and_losses
    assert all(p.requires_grad for p in model.backbone.parameters())
    assert all(b < a for a, b in zip(totals, totals[1:])), totals
    assert totals[-1] < 0.9 * totals[0], totals


def test_tiny_config_boxes_project_inside_an_odd_size_image(
        repo_root, tiny_model_and_losses, tmp_path):
    """Frames of 309x93 pixels (scale 0.249) through the tiny config's test
    pipeline: every predicted 3D box is in the camera frame of the file
    (z > 0) and its centre (x, y - h / 2, z) projects through the file's P2
    into the image, onto the predicted 2D box."""
    from vitdense.datasets.synthetic import make_kitti_shapes
    from vitdense.registry import DATASETS
    model, _ = tiny_model_and_losses
    root = make_kitti_shapes(str(tmp_path / 'odd'), num_train=1, num_val=2,
                             scale=0.249, seed=4)
    cfg = _config(repo_root, TINY)
    cfg.test_dataloader.dataset.data_root = root
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    model.criterion.test_cfg.update(score_thr=0.0)
    model.eval()
    with torch.no_grad():
        results = model.test_step(
            pseudo_collate([dataset[i] for i in range(len(dataset))]))
    for sample in results:
        height, width = sample.ori_shape
        assert (height, width) == (93, 309)
        assert sample.img_shape == (96, 320)
        pred = sample.pred_instances_3d
        boxes = pred.bboxes_3d.numpy()
        assert len(boxes) == 20
        assert np.isfinite(boxes).all()
        assert (boxes[:, 2] > 0).all()
        centres = np.concatenate(
            [boxes[:, :1], boxes[:, 1:2] - boxes[:, 4:5] / 2, boxes[:, 2:3],
             np.ones((len(boxes), 1))], 1)
        uvw = centres @ np.asarray(sample.ori_cam2img, np.float64).T
        u, v = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
        assert ((u >= 0) & (u <= width) & (v >= 0) & (v <= height)).all()
        x1, y1, x2, y2 = pred.bboxes.numpy().T
        assert ((x1 - 1e-3 <= u) & (u <= x2 + 1e-3) & (y1 - 1e-3 <= v) &
                (v <= y2 + 1e-3)).all()
