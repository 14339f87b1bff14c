# RMT-T, Semantic FPN, 80k iterations, ADE20K 512x512. Settings of the
# official segmentation/configs/RMT/RMT_FPN_t_1x.py (AdamW, lr 1e-4,
# wd 1e-4, poly 0.9 down to 1e-4). Paper: 46.4 mIoU.
# The base of the RMT-S/B/L FPN configs.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py', 'mmseg::_base_/datasets/ade20k.py',
    '../_base_/default_runtime_seg.py', '../_base_/schedules/schedule_80k.py'
]
# Official ImageNet-1K RMT-T weights are on Baidu Pan only (qhfan/RMT
# README); init_cfg reads the official file as is (keys mapped by
# vitdense.models.backbones.rmt.checkpoint_filter_fn).
pretrained = 'checkpoints/rmt-t_in1k.pth'
crop_size = (512, 512)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='RMT',
        arch='t',
        drop_path_rate=0.1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]),
    decode_head=dict(num_classes=150))
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001))
