# A narrow CrossFormer++ (32-64-128-256) in Mask R-CNN on the embedded
# COCO-format shapes (128x128, 3 classes): trains on a CPU; used by the tests.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_shapes_instance.py',
    '../_base_/default_runtime.py'
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='CrossFormer',
        arch=dict(
            embed_dims=32,
            depths=[1, 1, 4, 1],
            num_heads=[1, 2, 4, 8],
            group_size=[4, 4, 4, 4],
            interval=[4, 2, 1, 1],
            use_acl=True),
        drop_path_rate=0.1),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_head=dict(in_channels=64, fc_out_channels=128, num_classes=3),
        mask_head=dict(in_channels=64, conv_out_channels=64, num_classes=3),
        bbox_roi_extractor=dict(out_channels=64),
        mask_roi_extractor=dict(out_channels=64)))
train_dataloader = dict(batch_size=2)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=400, val_interval=200)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0002, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50)
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=200))
log_processor = dict(by_epoch=False)
