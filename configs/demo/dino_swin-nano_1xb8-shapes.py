# mmdet's DINO with a small Swin, trained from scratch on the embedded
# COCO-format shapes (128x128, 3 classes) on a CPU: the DINO row next to the
# demo (configs/relation_detr/relation-detr_swin-nano_1xb8-shapes.py inherits
# everything here, so both share backbone, data and schedule). As the
# official DINO next to Relation-DETR (xiuqhou/Relation-DETR
# configs/dino_pp), the reference boxes are encoded with embed_dims // 2 sine
# features per coordinate (AnyWidthDINO) and the positional encoding is the
# official one.
_base_ = [
    '../_base_/datasets/coco_shapes_detection.py',
    '../_base_/default_runtime.py'
]
embed_dims = 128
num_levels = 4

model = dict(
    type='AnyWidthDINO',
    num_queries=100,
    with_box_refine=True,
    as_two_stage=True,
    num_feature_levels=num_levels,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='SwinTransformer',
        embed_dims=48,
        depths=(1, 1, 2, 1),
        num_heads=(1, 3, 6, 12),
        window_size=7,
        mlp_ratio=4,
        qkv_bias=True,
        drop_path_rate=0.1,
        patch_norm=True,
        out_indices=(1, 2, 3),
        with_cp=False,
        convert_weights=False),
    neck=dict(
        type='ChannelMapper',
        in_channels=[96, 192, 384],
        kernel_size=1,
        out_channels=embed_dims,
        act_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=num_levels),
    encoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=embed_dims, num_levels=num_levels, dropout=0.0),
            ffn_cfg=dict(
                embed_dims=embed_dims,
                feedforward_channels=256,
                ffn_drop=0.0))),
    decoder=dict(
        num_layers=3,
        return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=embed_dims, num_heads=8, dropout=0.0),
            cross_attn_cfg=dict(
                embed_dims=embed_dims, num_levels=num_levels, dropout=0.0),
            ffn_cfg=dict(
                embed_dims=embed_dims,
                feedforward_channels=256,
                ffn_drop=0.0)),
        post_norm_cfg=None),
    # as the official DINO and Relation-DETR configs (mmdet's DINO: offset
    # 0.0, temperature 20)
    positional_encoding=dict(
        num_feats=embed_dims // 2, normalize=True, offset=-0.5,
        temperature=10000),
    bbox_head=dict(
        type='DINOHead',
        num_classes=3,
        embed_dims=embed_dims,
        sync_cls_avg_factor=True,
        loss_cls=dict(
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=50)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='FocalLossCost', weight=2.0),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=100))

# 1600 iterations (32 epochs of 400 images) with a x0.1 step at 1390: the
# step is worth about +0.1 AP here, and it must come late (a step at 1000 of
# 1150 ended 0.08 AP lower than one at 1120 of 1300). An infinite sampler:
# mmengine's loop sleeps 2 s at every restart of a finite one (~1 min here).
max_iters = 1600
train_dataloader = dict(sampler=dict(type='InfiniteSampler', shuffle=True))
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=4e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[1390],
        gamma=0.1)
]
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=max_iters, max_keep_ckpts=1),
    logger=dict(type='LoggerHook', interval=50))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=8)
