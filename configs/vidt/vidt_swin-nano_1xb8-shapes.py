# Tiny ViDT trained from scratch on the embedded COCO-format shapes (128x128,
# 3 classes) on a CPU: data, schedule and the small Swin of the `make demo`
# DINO/Relation-DETR configs (configs/demo/dino_swin-nano_1xb8-shapes.py),
# here with RAM and 100 [DET] tokens, and the ViDT decoder at width 128
# (3 layers, FFN 256) with the losses of ./vidt_swin-t_8xb2-50e_coco.py.
_base_ = '../demo/dino_swin-nano_1xb8-shapes.py'
embed_dims = 128
num_levels = 4

model = dict(
    _delete_=True,
    type='ViDT',
    num_queries=100,
    with_box_refine=True,
    num_feature_levels=num_levels,
    det_channels=384,
    pos_channels=embed_dims,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='SwinRAM',
        arch=dict(embed_dims=48, depths=(1, 1, 2, 1), num_heads=(1, 3, 6, 12)),
        window_size=7,
        drop_path_rate=0.1,
        det_token_num=100,
        pos_dims=embed_dims,
        reduced_dims=embed_dims,
        cross_indices=(3, ),
        out_indices=(1, 2, 3, 4)),
    neck=dict(
        type='ChannelMapper',
        in_channels=[96, 192, 384, embed_dims],
        kernel_size=1,
        out_channels=embed_dims,
        act_cfg=None,
        bias=True,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=num_levels),
    decoder=dict(
        num_layers=3,
        return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=embed_dims,
                num_heads=8,
                dropout=0.1,
                batch_first=True),
            cross_attn_cfg=dict(
                embed_dims=embed_dims,
                num_heads=8,
                num_levels=num_levels,
                num_points=4,
                dropout=0.1,
                batch_first=True),
            ffn_cfg=dict(
                embed_dims=embed_dims,
                feedforward_channels=256,
                ffn_drop=0.1)),
        post_norm_cfg=None),
    bbox_head=dict(
        type='DeformableDETRHead',
        num_classes=3,
        embed_dims=embed_dims,
        sync_cls_avg_factor=True,
        loss_cls=dict(
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=2.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='FocalLossCost', weight=2.0, eps=1e-8),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=100))

# The `make demo` Relation-DETR's wall time (1600 iterations at 0.50 s, 13.4
# min on 2 CPU cores): 2100 iterations at 0.375 s (tools/train.py, measured
# alone), the x0.1 step at the same 87% of the schedule.
max_iters = 2100
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = _base_.param_scheduler
param_scheduler[1].update(end=max_iters, milestones=[1825])
default_hooks = dict(checkpoint=dict(interval=max_iters))
