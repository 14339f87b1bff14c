# ViDT, Swin-S with RAM (ImageNet-1K), 50 epochs on COCO.
_base_ = './vidt_swin-t_8xb2-50e_coco.py'
model = dict(
    backbone=dict(
        arch='s',
        init_cfg=dict(
            checkpoint='https://github.com/SwinTransformer/storage/releases/'
            'download/v1.0.0/swin_small_patch4_window7_224.pth')))
