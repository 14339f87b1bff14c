# kMaX-DeepLab for semantic segmentation: the network of
# kmax-deeplab_r18-nano_1xb2-coco-shapes-panoptic.py trained from scratch on
# the embedded ADE20K-format shapes (150 stuff classes, 64x64 crops, mmseg's
# data and IoUMetric) on a CPU, for tests and smoke runs. mmseg scope: the
# mmdet backbone and data preprocessor are named with their scope.
_base_ = [
    '../_base_/datasets/ade20k_shapes.py', '../_base_/default_runtime_seg.py',
    'mmseg::_base_/schedules/schedule_80k.py'
]
small_queries = dict(
    num_queries=16,
    query_channels=32,
    key_channels=16,
    ffn_channels=64,
    embed_channels=16,
    num_heads=2)
model = dict(
    type='KMaXDeepLab',
    num_things_classes=0,
    num_stuff_classes=150,
    size_divisor=32,
    data_preprocessor=dict(
        type='mmdet.DetDataPreprocessor',
        mean=[127.5, 127.5, 127.5],
        std=[127.5, 127.5, 127.5],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='mmdet.ResNet',
        depth=18,
        base_channels=16,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch'),
    panoptic_head=dict(
        type='KMaXDeepLabHead',
        in_channels=(16, 32, 64, 128),
        pixel_decoder=dict(
            num_blocks=(1, 1, 1, 1),
            base_channels=(32, 16, 8, 8),
            num_heads=2),
        transformer_decoder=dict(num_layers=(1, 1, 1), **small_queries)),
    criterion=dict(insdis_sample_k=1024, aux_semantic_sample_k=1024),
    test_cfg=dict(panoptic_on=False, semantic_on=True))

# 2000 iterations: 3.7 minutes on 2 CPU cores (0.10 s each, measured alone)
max_iters = 2000
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=0.1))),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=20,
         end=max_iters)
]
train_dataloader = dict(batch_size=4)
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
randomness = dict(seed=0)
