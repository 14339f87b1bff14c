# kMaX-DeepLab R50 for ADE20K semantic segmentation (150 classes, mmseg's
# data and IoUMetric): the network, optimiser and 100k-iteration schedule of
# kmax-deeplab_r50_32xb2-100k_ade20k-panoptic.py (official ADE20K setting)
# with the semantic targets only (every class is stuff) and semantic
# inference (official ``semantic_inference``). mmseg scope: the mmdet
# backbone and data preprocessor are named with their scope.
_base_ = [
    'mmseg::_base_/datasets/ade20k.py', '../_base_/default_runtime_seg.py',
    'mmseg::_base_/schedules/schedule_80k.py'
]
image_size = (1281, 1281)
model = dict(
    type='KMaXDeepLab',
    num_things_classes=0,
    num_stuff_classes=150,
    pad_size=image_size,
    data_preprocessor=dict(
        type='mmdet.DetDataPreprocessor',
        mean=[127.5, 127.5, 127.5],
        std=[127.5, 127.5, 127.5],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='mmdet.ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='SyncBN', requires_grad=True, eps=1e-3,
                      momentum=0.01),
        norm_eval=False,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    panoptic_head=dict(
        type='KMaXDeepLabHead',
        in_channels=(256, 512, 1024, 2048),
        transformer_decoder=dict(num_layers=(2, 2, 2), num_queries=128),
        norm_cfg=dict(type='SyncBN', eps=1e-3, momentum=0.01)),
    test_cfg=dict(panoptic_on=False, semantic_on=True))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadValidatedSegAnnotations', reduce_zero_label=True,
         num_classes=150),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.2, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=image_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadValidatedSegAnnotations', reduce_zero_label=True,
         num_classes=150),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='vitdense.ValidatedIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

max_iters = 100000
warmup_iters = 5000
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.05,
                   betas=(0.9, 0.999)),
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=0.1))))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False,
         begin=warmup_iters, end=max_iters)
]
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=5000, max_keep_ckpts=3))
auto_scale_lr = dict(enable=False, base_batch_size=64)
