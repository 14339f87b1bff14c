# kMaX-DeepLab with a narrow ResNet-18 (width 16) and a small head, trained
# from scratch on the embedded COCO-format panoptic shapes (128x128, 3 thing
# and 2 stuff classes) on a CPU, for tests and smoke runs. Official
# architecture (axial blocks at strides 32/16, bottlenecks at 8/4, kMaX
# layers at 32/16/8, the official losses and post-processing), every width
# and count scaled down; any input size (no fixed padding).
_base_ = [
    '../_base_/datasets/coco_shapes_panoptic.py',
    '../_base_/default_runtime.py'
]
num_things_classes = 3
num_stuff_classes = 2
small_queries = dict(
    num_queries=16,
    query_channels=32,
    key_channels=16,
    ffn_channels=64,
    embed_channels=16,
    num_heads=2)

model = dict(
    type='KMaXDeepLab',
    num_things_classes=num_things_classes,
    num_stuff_classes=num_stuff_classes,
    size_divisor=32,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        # TF-style normalisation to [-1, 1], as the official
        mean=[127.5, 127.5, 127.5],
        std=[127.5, 127.5, 127.5],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='ResNet',
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
    test_cfg=dict(panoptic_on=True, semantic_on=True))

# draws all-void panoptic predictions too (mmdet's raises on them)
visualizer = dict(type='PanopticDetLocalVisualizer')
# 2600 iterations: 9.6 minutes on 2 CPU cores (0.23 s each, measured alone)
max_iters = 2600
train_dataloader = dict(
    batch_size=2, sampler=dict(type='InfiniteSampler', shuffle=True))
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# official optimiser (AdamW, wd 0.05, backbone lr x0.1) at a from-scratch lr
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=0.1))),
    clip_grad=dict(max_norm=1.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=50,
         end=max_iters)
]
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=max_iters, max_keep_ckpts=1),
    logger=dict(type='LoggerHook', interval=50))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
