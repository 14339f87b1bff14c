# Tiny ViT-CoMer (width 32, segmentation flavour) + UperNet from scratch on the
# embedded ADE20K-format shapes (64x64 crops), for CPU tests and smoke runs.
# mmseg keeps its default hooks in the schedule files: the 80k schedule brings
# them (typed), this file shortens the schedule.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    '../_base_/datasets/ade20k_shapes.py',
    '../_base_/default_runtime_seg.py', '../_base_/schedules/schedule_80k.py'
]
width = 32
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=(64, 64)),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='ViTCoMer',
        arch=dict(
            embed_dims=width,
            depth=4,
            num_heads=2,
            deform_num_heads=4,
            deform_ratio=1.0,
            interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]]),
        flavour='segmentation',
        mrfp_ratio=2.0,
        pretrain_size=64,
        conv_inplane=8,
        n_points=2,
        norm_cfg=norm_cfg),
    decode_head=dict(
        in_channels=[width] * 4,
        channels=width,
        pool_scales=(1, 2, 3),
        num_classes=150,
        norm_cfg=norm_cfg),
    auxiliary_head=dict(
        in_channels=width, channels=16, num_classes=150, norm_cfg=norm_cfg))

max_iters = 200
train_cfg = dict(
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.01),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20)
]
train_dataloader = dict(batch_size=2)
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
randomness = dict(seed=0)
