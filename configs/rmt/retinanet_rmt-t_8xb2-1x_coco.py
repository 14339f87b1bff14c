# RMT-T, RetinaNet, 12 epochs, COCO. Settings of the official
# detect/configs/RMT/retinanet_t_1x.py (AdamW, lr 4e-4, wd 1e-4).
# Paper: 45.1 box AP.
# The base of the RMT-S/B/L RetinaNet configs.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_1x.py', '../_base_/default_runtime.py'
]
# Official ImageNet-1K RMT-T weights are on Baidu Pan only (qhfan/RMT
# README); init_cfg reads the official file as is (keys mapped by
# vitdense.models.backbones.rmt.checkpoint_filter_fn).
pretrained = 'checkpoints/rmt-t_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='RMT',
        arch='t',
        drop_path_rate=0.1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        in_channels=[64, 128, 256, 512],
        start_level=1,
        add_extra_convs='on_input'))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0004, weight_decay=0.0001))
