# Tiny ViT-CoMer (width 32, 4 blocks, one per interaction) + Mask R-CNN from
# scratch on the embedded COCO-format shapes (128x128, 3 classes), for CPU
# tests and smoke runs.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_shapes_instance.py',
    '../_base_/default_runtime.py'
]
width = 32
model = dict(
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
        flavour='detection',
        pretrain_size=128,
        conv_inplane=8,
        n_points=2,
        window_attn=[True, False, True, False],
        window_size=4),
    neck=dict(in_channels=[width] * 4, out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, fc_out_channels=64, num_classes=3),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(
            in_channels=width, conv_out_channels=width, num_classes=3)))

max_iters = 200
train_cfg = dict(
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.05),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20)
]
train_dataloader = dict(batch_size=2)
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
