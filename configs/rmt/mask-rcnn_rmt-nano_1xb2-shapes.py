# A narrow RMT (16-32-48-64) in Mask R-CNN on the embedded COCO-format shapes
# (128x128, 3 classes): trains on a CPU; used by the tests.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_shapes_instance.py',
    '../_base_/default_runtime.py'
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='RMT',
        arch=dict(
            embed_dims=[16, 32, 48, 64],
            depths=[1, 1, 2, 1],
            num_heads=[2, 2, 4, 4],
            init_values=[2, 2, 2, 2],
            heads_ranges=[4, 4, 6, 6],
            mlp_ratios=[3, 3, 3, 3],
            decomposed=[True, True, False, False],
            layerscales=[False, False, False, False]),
        drop_path_rate=0.1),
    neck=dict(in_channels=[16, 32, 48, 64], out_channels=64),
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
