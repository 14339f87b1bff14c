# Swin-T (IN-1K), UperNet, 160k, ADE20K 512x512: mmseg's Swin config with
# vitdense.SwinTransformer (strict loading of the official checkpoint).
# Official Swin-Seg T: 44.51 mIoU (ss).
_base_ = (
    'mmseg::swin/'
    'swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py')
custom_imports = dict(imports=['vitdense'], allow_failed_imports=False)
pretrained = 'https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth'  # noqa
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='vitdense.SwinTransformer',
        arch='t',
        window_size=7,
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
