# Relation-DETR, Swin-T (IN-1K), 12 epochs.
# Like the official Swin configs: stages 2-4 + one extra level (4 levels).
# vitdense.SwinTransformer loads the official checkpoint strictly. The base of
# the Swin-S/B/L configs.
_base_ = './relation-detr_r50_8xb2-12e_coco.py'
pretrained = 'https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='vitdense.SwinTransformer',
        arch='t',
        window_size=7,
        drop_path_rate=0.2,
        out_indices=(1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768]))
