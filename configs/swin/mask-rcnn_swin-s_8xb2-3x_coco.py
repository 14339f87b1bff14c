# Swin-S, Mask R-CNN, 3x, COCO. Official Swin-Det S 3x: 48.5 box / 43.3 mask.
_base_ = './mask-rcnn_swin-t_8xb2-3x_coco.py'
pretrained = 'https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_small_patch4_window7_224.pth'  # noqa
model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
