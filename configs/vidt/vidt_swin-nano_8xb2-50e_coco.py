# ViDT, Swin-nano with RAM (ViDT's own Swin: embed 48, ImageNet-1K weights
# from the official release), 50 epochs on COCO.
_base_ = './vidt_swin-t_8xb2-50e_coco.py'
model = dict(
    det_channels=384,
    backbone=dict(
        arch='n',
        init_cfg=dict(
            checkpoint='https://github.com/naver-ai/vidt/releases/download/'
            'v0.1-swin/swin_nano_patch4_window7_224.pth')),
    neck=dict(in_channels=[96, 192, 384, 256]))
