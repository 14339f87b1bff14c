# Relation-DETR, Swin-L (IN-22K, 384, window 12), 12 epochs (paper: 57.8 AP).
_base_ = './relation-detr_swin-t_8xb2-12e_coco.py'
pretrained = 'https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_large_patch4_window12_384_22k.pth'  # noqa
model = dict(
    backbone=dict(
        arch='l',
        pretrain_img_size=384,
        window_size=12,
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[384, 768, 1536]))
