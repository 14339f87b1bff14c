# RMT-S, Mask R-CNN, 36 epochs, multi-scale + crop (the DETR-style
# AutoAugment of the official detect/configs/RMT/maskrcnn_s_3x.py, here
# through mmdet's Swin 3x recipe), steps 27/33, the optimiser of the RMT 1x
# configs. Paper: 50.7 / 44.9. The base of the RMT-B 3x config.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/schedule_adamw_3x.py', '../_base_/default_runtime.py'
]
# Official ImageNet-1K RMT-S weights are on Baidu Pan only (qhfan/RMT
# README); init_cfg reads the official file as is (keys mapped by
# vitdense.models.backbones.rmt.checkpoint_filter_fn).
pretrained = 'checkpoints/rmt-s_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='RMT',
        arch='s',
        drop_path_rate=0.15,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=0.0004, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
