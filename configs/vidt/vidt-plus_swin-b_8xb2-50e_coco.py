# ViDT+, Swin-B with RAM (window 7, ImageNet-22K: the official
# swin_base_win7_22k), 50 epochs on COCO.
_base_ = './vidt-plus_swin-t_8xb2-50e_coco.py'
model = dict(
    det_channels=1024,
    backbone=dict(
        arch='b',
        init_cfg=dict(
            checkpoint='https://github.com/SwinTransformer/storage/releases/'
            'download/v1.0.0/swin_base_patch4_window7_224_22k.pth')),
    neck=dict(in_channels=[256, 512, 1024, 256]))
