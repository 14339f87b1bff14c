# kMaX-DeepLab R50 on COCO panoptic, the official setting
# (bytedance/kmax-deeplab configs/coco/panoptic_segmentation/
# kmax_r50.yaml): 1281x1281 large-scale jitter (scale 0.2-2.0), 128 queries,
# AdamW lr 5e-4 wd 0.05, backbone lr x0.1, 5k-iteration linear warm-up then
# poly (power 0.9), 150k iterations at batch 64 (32 GPUs x 2), SyncBN
# everywhere (BN eps 1e-3, momentum 0.01 in the head).
# Differences: mmdet's RandomResize + RandomCrop for the official LSJ mapper
# (same scale range and crop, crop positions drawn differently); mmengine's
# LinearLR + PolyLR for detectron2's TF2WarmupPolyLR (the poly decay starts
# after the warm-up instead of running under it); no AMP by default (add
# optim_wrapper.type='AmpOptimWrapper' on GPUs); the backbone is mmdet's
# ResNet-50 from torchvision weights (the official starts from its own
# ImageNet R50; tools/model_converters/kmax2vitdense.py converts official
# kMaX checkpoints onto this layout).
_base_ = [
    '../_base_/datasets/coco_shapes_panoptic.py',
    '../_base_/default_runtime.py'
]
image_size = (1281, 1281)
num_things_classes = 80
num_stuff_classes = 53
head_norm_cfg = dict(type='SyncBN', eps=1e-3, momentum=0.01)

model = dict(
    type='KMaXDeepLab',
    num_things_classes=num_things_classes,
    num_stuff_classes=num_stuff_classes,
    # official: every image zero-padded to the fixed training size
    pad_size=image_size,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[127.5, 127.5, 127.5],
        std=[127.5, 127.5, 127.5],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='ResNet',
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
        norm_cfg=head_norm_cfg),
    test_cfg=dict(panoptic_on=True, semantic_on=False, instance_on=False))

data_root = 'data/coco/'
# the dataset's own classes (COCO: 80 thing + 53 stuff), not the shapes'
metainfo = dict(_delete_=True)
train_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='LoadValidatedPanopticAnnotations', with_bbox=True,
         with_mask=True, with_seg=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.2, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=image_size, crop_type='absolute',
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadValidatedPanopticAnnotations', with_bbox=True,
         with_mask=True, with_seg=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/panoptic_train2017.json',
        data_prefix=dict(img='train2017/',
                         seg='annotations/panoptic_train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/panoptic_val2017.json',
        data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='VitdenseCocoPanopticMetric',
    ann_file=data_root + 'annotations/panoptic_val2017.json',
    seg_prefix=data_root + 'annotations/panoptic_val2017/')
test_evaluator = val_evaluator

# draws all-void panoptic predictions too (mmdet's raises on them)
visualizer = dict(type='PanopticDetLocalVisualizer')
max_iters = 150000
warmup_iters = 5000
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
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
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000,
                    max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
# the official batch: 32 GPUs x 2 images
auto_scale_lr = dict(enable=False, base_batch_size=64)
