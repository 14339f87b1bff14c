# A narrow CrossFormer++ (32-64-128-256) in UperNet on the embedded
# ADE20K-format shapes (64x64 crops, BN instead of SyncBN): trains on a CPU;
# used by the tests. mmseg's default hooks come with its schedule files.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    '../_base_/datasets/ade20k_shapes.py',
    '../_base_/default_runtime_seg.py', '../_base_/schedules/schedule_80k.py'
]
norm_cfg = dict(type='BN', requires_grad=True)
crop_size = (64, 64)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
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
    decode_head=dict(
        in_channels=[32, 64, 128, 256],
        channels=64,
        num_classes=150,
        norm_cfg=norm_cfg),
    auxiliary_head=dict(
        in_channels=128, channels=32, num_classes=150, norm_cfg=norm_cfg))
train_cfg = dict(max_iters=400, val_interval=200)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0002, weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=0, end=400,
         by_epoch=False)
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=200))
