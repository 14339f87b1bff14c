# RMT-B, Mask R-CNN, 36 epochs, multi-scale + crop (the DETR-style
# AutoAugment of the official detect/configs/RMT/maskrcnn_m_3x.py, here
# through mmdet's Swin 3x recipe), steps 27/33. Paper: 52.2 / 46.1.
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'
custom_imports = dict(imports=['vitdense'], allow_failed_imports=False)
# Official ImageNet-1K RMT-B weights are on Baidu Pan only (qhfan/RMT
# README); init_cfg reads the official file as is (keys mapped by
# vitdense.models.backbones.rmt.checkpoint_filter_fn).
pretrained = 'checkpoints/rmt-b_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='RMT',
        arch='b',
        drop_path_rate=0.4,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[80, 160, 320, 512]))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=0.0004, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
