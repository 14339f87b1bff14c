"""Uni-Perceiver v2 generalist: the tiny shipped config on the embedded COCO
and ImageNet-format shapes, through the config's pipelines and data
preprocessor."""
import copy
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

CONFIG = 'configs/uni_perceiver_v2/uni-perceiver-v2_swin-nano_1xb8-shapes.py'


def _config(repo_root, coco_root, imagenet_root):
    cfg = Config.fromfile(osp.join(repo_root, CONFIG))
    coco_root = coco_root.rstrip('/') + '/'
    imagenet_root = imagenet_root.rstrip('/') + '/'
    cfg.model.task_classes.classification = \
        imagenet_root + 'meta/classes.txt'
    cfg.model.text_encoder.tokenizer = imagenet_root + 'meta/bpe'
    cfg.model.mask_cfg.num_points = 64
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.dataset.data_root = coco_root
        loader.batch_size = 2
    for loader in (cfg.train_cfg.extra_dataloaders.classification,
                   cfg.val_cfg.extra_tasks.classification.dataloader):
        loader.dataset.data_root = imagenet_root
        loader.batch_size = 3
    return cfg


@pytest.fixture(scope='module')
def setup(repo_root, coco_shapes_root, imagenet_shapes_root):
    init_default_scope('mmdet')
    import vitdense.models  # noqa: F401
    from vitdense.registry import MODELS
    cfg = _config(repo_root, coco_shapes_root, imagenet_shapes_root)
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(cfg.model))
    model.init_weights()

    def batch(loader_cfg):
        loader = Runner.build_dataloader(copy.deepcopy(loader_cfg), seed=0)
        return next(iter(loader))

    batches = dict(
        det=batch(cfg.train_dataloader),
        det_val=batch(cfg.val_dataloader),
        cls=batch(cfg.train_cfg.extra_dataloaders.classification),
        cls_val=batch(cfg.val_cfg.extra_tasks.classification.dataloader))
    return cfg, model, batches


def _losses(model, batch):
    model.train()
    data = model.data_preprocessor(copy.deepcopy(batch), True)
    return model.loss(data['inputs'], data['data_samples'])


def test_detection_loss_trains_proposals_masks_and_classes(setup):
    _, model, batches = setup
    losses = _losses(model, batches['det'])
    for key in ('loss_cls', 'loss_bbox', 'loss_iou', 'enc_loss_cls',
                'dn_loss_bbox', 'loss_region_cls', 'loss_mask',
                'loss_dice'):
        assert key in losses, key
        assert torch.isfinite(losses[key]).all(), key
    assert 'loss_global_cls' not in losses
    assert losses['loss_region_cls'] > 0
    model.zero_grad()
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    # class names through RoBERTa and g, regions through the RPN, masks
    for module in (model.text_encoder, model.unified_decoder,
                   model.mask_embed, model.backbone, model.region_embed,
                   model.global_pool):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), \
            type(module).__name__
    assert model.logit_scale.grad is not None


def test_classification_loss_is_cross_entropy_of_scaled_cosines(setup):
    _, model, batches = setup
    assert set(_losses(model, batches['cls'])) == {'loss_global_cls'}
    # eval mode: no MoE gate noise, so both computations see the same g
    model.eval()
    data = model.data_preprocessor(copy.deepcopy(batches['cls']), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    feats = model.extract_feat(data['inputs'])
    image = model._image_embedding(feats, data['data_samples'])
    names = model.class_embeddings('classification')
    assert names.shape[0] == 10
    logits = model.logit_scale.exp() * F.normalize(image, dim=-1) @ \
        F.normalize(names, dim=-1).T
    labels = torch.cat([s.gt_label for s in data['data_samples']])
    expected = -logits.log_softmax(-1)[torch.arange(len(labels)),
                                       labels].mean()
    weight = model.loss_weights['global_cls']
    torch.testing.assert_close(losses['loss_global_cls'], weight * expected)


def test_predict_detection_and_segmentation(setup):
    _, model, batches = setup
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(copy.deepcopy(batches['det_val']),
                                       False)
        results = model.predict(data['inputs'], data['data_samples'])
    for sample in results:
        pred = sample.pred_instances
        assert len(pred) == model.test_cfg['max_per_img']
        assert pred.labels.max() < 3 and pred.labels.min() >= 0
        assert (pred.scores[:-1] >= pred.scores[1:]).all()
        assert pred.scores.max() <= 1
        h, w = sample.ori_shape
        assert pred.masks.shape == (len(pred), h, w)
        assert pred.masks.dtype == torch.bool
        assert (pred.bboxes[:, 2] <= w + 1e-3).all()


def test_predict_classification_scores(setup):
    _, model, batches = setup
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(copy.deepcopy(batches['cls_val']),
                                       False)
        results = model.predict(data['inputs'], data['data_samples'])
    for sample in results:
        assert sample.pred_score.shape == (10, )
        torch.testing.assert_close(sample.pred_score.sum(),
                                   torch.tensor(1.0))
        assert sample.pred_label.item() == sample.pred_score.argmax()
    # class embeddings are cached in eval mode and recomputed in training
    assert 'classification' in model._class_cache
    model.train()
    assert not model._class_cache


def test_mixed_train_step_sums_both_tasks_in_one_update(setup):
    _, model, batches = setup
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    log_vars = model.train_step(
        [copy.deepcopy(batches['det']), copy.deepcopy(batches['cls'])],
        OptimWrapper(optimizer))
    assert 'loss_region_cls' in log_vars and 'loss_global_cls' in log_vars
    parts = sum(v for k, v in log_vars.items() if 'loss' in k and k != 'loss')
    assert math.isclose(log_vars['loss'], float(parts), rel_tol=1e-5)


def test_batch_with_two_tasks_is_refused(setup):
    _, model, batches = setup
    det = copy.deepcopy(batches['det'])['data_samples'][:1]
    cls = copy.deepcopy(batches['cls'])['data_samples'][:1]
    with pytest.raises(ValueError, match='one task'):
        model.batch_task(det + cls)


def test_multi_class_proposal_head_is_refused(repo_root, coco_shapes_root,
                                              imagenet_shapes_root):
    from vitdense.registry import MODELS
    cfg = _config(repo_root, coco_shapes_root, imagenet_shapes_root)
    cfg.model.bbox_head.num_classes = 3
    with pytest.raises(ValueError, match='num_classes must be 1'):
        MODELS.build(cfg.model)


def test_missing_class_name_file_is_named(setup, tmp_path):
    _, model, _ = setup
    model = copy.deepcopy(model)
    missing = str(tmp_path / 'classes.txt')
    model.task_classes['classification'] = missing
    model._class_names.clear()
    with pytest.raises(FileNotFoundError, match='classes.txt'):
        model.class_embeddings('classification')


@pytest.mark.parametrize('task', ['det', 'cls'])
def test_one_mt_adamw_iteration_per_task(setup, task):
    """One unmixed training iteration of each task on the tiny config:
    MT-AdamW (its task set as the loop does) moves the shared decoder, the
    text encoder and the backbone; only detection trains the proposal
    network's foreground classifiers and the mask branch's losses."""
    from vitdense.engine.optimizers import MTAdamW
    cfg, model, batches = setup
    model = copy.deepcopy(model)
    model.zero_grad(set_to_none=True)  # earlier tests' gradients
    model.train()
    weights = dict(cfg.optim_wrapper.optimizer.task_sampling_weights)
    optimizer = MTAdamW(model.parameters(), lr=1e-3,
                        task_sampling_weights=weights)
    optimizer.set_task('detection' if task == 'det' else 'classification')
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    log_vars = model.train_step(copy.deepcopy(batches[task]),
                                OptimWrapper(optimizer))
    assert math.isfinite(float(log_vars['loss']))
    moved = {k for k, v in model.named_parameters()
             if not torch.equal(v, before[k])}
    assert any(k.startswith('unified_decoder.') for k in moved)
    assert any(k.startswith('text_encoder.') for k in moved)
    assert any(k.startswith('backbone.') for k in moved)
    # classification reads the proposals' regional tokens (boxes, masks,
    # q_sem) but never their foreground scores
    assert any(k.startswith('bbox_head.reg_branches.') for k in moved)
    assert any(k.startswith('mask_embed.') for k in moved)
    foreground = any(k.startswith('bbox_head.cls_branches.') for k in moved)
    assert foreground == (task == 'det')
