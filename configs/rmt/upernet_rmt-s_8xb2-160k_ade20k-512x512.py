# RMT-S, UperNet, 160k iterations, ADE20K 512x512. Settings of the
# official segmentation/configs/RMT/RMT_Uper_s_2x.py (AdamW, lr 6e-5,
# wd 0.01, no decay on norms, 1500 warm-up iterations, poly 1.0).
# Paper: 49.8 mIoU.
# The base of the RMT-B/L UperNet configs.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py', 'mmseg::_base_/datasets/ade20k.py',
    '../_base_/default_runtime_seg.py', '../_base_/schedules/schedule_160k.py'
]
# Official ImageNet-1K RMT-S weights are on Baidu Pan only (qhfan/RMT
# README); init_cfg reads the official file as is (keys mapped by
# vitdense.models.backbones.rmt.checkpoint_filter_fn).
pretrained = 'checkpoints/rmt-s_in1k.pth'
crop_size = (512, 512)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='RMT',
        arch='s',
        drop_path_rate=0.15,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150))
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1500),
    dict(
        type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000,
        by_epoch=False)
]
