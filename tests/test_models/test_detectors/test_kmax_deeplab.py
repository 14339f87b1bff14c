"""KMaXDeepLab detector: loss and predict through the mmdet interface on
batches of different sizes, panoptic and semantic outputs, padding."""
import numpy as np
import pytest
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData, PixelData
from mmseg.evaluation import IoUMetric
from mmseg.structures import SegDataSample

from vitdense.registry import MODELS
from vitdense.utils import register_all_modules

register_all_modules(init_default_scope=False)

NUM_THINGS, NUM_STUFF = 3, 2


def build_model(num_things=NUM_THINGS, num_stuff=NUM_STUFF, **kwargs):
    init_default_scope('mmdet')
    torch.manual_seed(0)
    cfg = dict(
        type='KMaXDeepLab',
        num_things_classes=num_things,
        num_stuff_classes=num_stuff,
        data_preprocessor=dict(
            type='DetDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3,
            bgr_to_rgb=True, pad_size_divisor=1),
        backbone=dict(type='ResNet', depth=18, base_channels=8,
                      out_indices=(0, 1, 2, 3), norm_eval=False),
        panoptic_head=dict(
            type='KMaXDeepLabHead',
            in_channels=(8, 16, 32, 64),
            pixel_decoder=dict(num_blocks=(1, 1, 1, 1),
                               base_channels=(8, 8, 8, 8), num_heads=2),
            transformer_decoder=dict(
                num_layers=(1, 1, 0), num_queries=8, query_channels=16,
                key_channels=8, ffn_channels=32, embed_channels=8,
                num_heads=2)),
        criterion=dict(insdis_sample_k=256, aux_semantic_sample_k=256,
                       seed=0),
        test_cfg=dict(panoptic_on=True, semantic_on=True),
        **kwargs)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def panoptic_sample(h, w, things=True, stuff=True):
    """A DetDataSample as mmdet's panoptic pipeline packs it: a square
    thing (label 1) and two stuff halves (labels 3, 4), or void only."""
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                         scale_factor=(1.0, 1.0)))
    sem = torch.full((1, h, w), 255, dtype=torch.long)
    if stuff:
        sem[:, :h // 2] = NUM_THINGS
        sem[:, h // 2:] = NUM_THINGS + 1
    masks = np.zeros((0, h, w), np.uint8)
    if things:
        masks = np.zeros((1, h, w), np.uint8)
        masks[0, h // 4:h // 2 + 4, w // 4:w // 2 + 4] = 1
        sem[0, torch.from_numpy(masks[0]).bool()] = 1
    sample.gt_sem_seg = PixelData(sem_seg=sem)
    sample.gt_instances = InstanceData(
        masks=BitmapMasks(masks, h, w),
        labels=torch.ones(len(masks), dtype=torch.long),
        bboxes=torch.zeros(len(masks), 4))
    return sample


def batch(samples):
    generator = torch.Generator().manual_seed(1)
    inputs = [
        torch.randint(0, 256, (3, ) + s.metainfo['img_shape'],
                      generator=generator, dtype=torch.uint8)
        for s in samples
    ]
    return dict(inputs=inputs, data_samples=samples)


def test_kmax_deeplab_loss_and_predict_stuff_only_and_empty_images():
    model = build_model()
    samples = [panoptic_sample(45, 61, things=False),
               panoptic_sample(38, 50, things=False, stuff=False)]
    data = model.data_preprocessor(batch(samples), True)
    losses = model(**data, mode='loss')
    names = {'loss_cls', 'loss_dice', 'loss_mask', 'loss_insdis',
             'loss_aux_semantic'}
    assert names <= set(losses)
    assert {f'd0.{n}' for n in names - {'loss_aux_semantic'}} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses['loss_cls'] > 0

    model.eval()
    samples = [panoptic_sample(45, 61, things=False),
               panoptic_sample(38, 50, things=False, stuff=False)]
    with torch.no_grad():
        data = model.data_preprocessor(batch(samples), False)
        results = model(**data, mode='predict')
    for result, shape in zip(results, [(45, 61), (38, 50)]):
        assert result.metainfo['batch_input_shape'] == (45, 61)
        panoptic = result.pred_panoptic_seg.sem_seg
        assert panoptic.shape == (1, ) + shape
        labels = panoptic % INSTANCE_OFFSET
        assert labels.min() >= 0 and labels.max() <= NUM_THINGS + NUM_STUFF
        semantic = result.pred_sem_seg
        assert semantic.data.shape == (1, ) + shape
        assert torch.equal(semantic.sem_seg, semantic.data)
        assert semantic.data.max() < NUM_THINGS + NUM_STUFF
        assert result.seg_logits.data.shape == (NUM_THINGS + NUM_STUFF, ) + (
            shape)


def test_kmax_deeplab_pads_to_size_divisor_and_pad_size():
    model = build_model(size_divisor=32).eval()
    samples = [panoptic_sample(45, 61), panoptic_sample(38, 70)]
    with torch.no_grad():
        data = model.data_preprocessor(batch(samples), False)
        pred_logits, pred_masks = model(**data, mode='tensor')
        assert pred_logits.shape == (2, 8, NUM_THINGS + NUM_STUFF + 1)
        assert pred_masks.shape == (2, 8, 64 // 4, 96 // 4)
        results = model(**data, mode='predict')
    assert [r.metainfo['batch_input_shape'] for r in results] == [(64, 96)] * 2
    assert results[1].pred_panoptic_seg.sem_seg.shape == (1, 38, 70)

    fixed = build_model(pad_size=(65, 97)).eval()
    with torch.no_grad():
        data = fixed.data_preprocessor(batch(samples), False)
        _, pred_masks = fixed(**data, mode='tensor')
    assert pred_masks.shape[-2:] == (17, 25)
    with pytest.raises(ValueError, match='larger than pad_size 40x97'):
        build_model(pad_size=(40, 97))(**data, mode='tensor')


def test_kmax_deeplab_semantic_samples_evaluate_with_mmseg_iou_metric():
    model = build_model(num_things=0, num_stuff=4)
    samples = []
    for h, w in [(33, 47), (40, 29)]:
        sem = torch.full((1, h, w), 255, dtype=torch.long)
        sem[:, :h // 2], sem[:, h // 2:, :w // 2] = 1, 3
        samples.append(SegDataSample(
            metainfo=dict(img_shape=(h, w), ori_shape=(h, w)),
            gt_sem_seg=PixelData(data=sem)))
    data = model.data_preprocessor(batch(samples), True)
    losses = model(**data, mode='loss')
    assert torch.isfinite(sum(losses.values()))
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(batch(samples), False)
        results = model(**data, mode='predict')
    assert results[0].pred_sem_seg.data.shape == (1, 33, 47)
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=('a', 'b', 'c', 'd'))
    metric.process({}, [r.to_dict() for r in results])
    value = metric.evaluate(2)['mIoU']
    assert 0.0 <= value <= 100.0


def test_kmax_deeplab_training_steps_lower_the_loss():
    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    samples = [panoptic_sample(45, 61), panoptic_sample(38, 50)]
    totals = []
    for _ in range(6):
        data = model.data_preprocessor(batch(samples), True)
        loss = sum(model(**data, mode='loss').values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    assert totals[-1] < 0.85 * totals[0], totals


def test_kmax_deeplab_class_numbers_are_set_once():
    init_default_scope('mmdet')
    with pytest.raises(ValueError, match='panoptic_head.num_classes is 7'):
        MODELS.build(dict(
            type='KMaXDeepLab', num_things_classes=3, num_stuff_classes=2,
            backbone=dict(type='ResNet', depth=18),
            panoptic_head=dict(type='KMaXDeepLabHead', num_classes=7)))
