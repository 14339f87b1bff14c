# Uni-Perceiver v2 BASE: Swin-B (ImageNet-21k, 384, window 12) instead of the
# ResNet-50 of ./uni-perceiver-v2_r50_16xb2-90k_coco-in1k.py (paper Table 6:
# 58.6 box AP, 50.6 mask AP, 86.3% ImageNet top-1 with all its tasks).
_base_ = './uni-perceiver-v2_r50_16xb2-90k_coco-in1k.py'
pretrained = 'https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_base_patch4_window12_384_22k.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='vitdense.SwinTransformer',
        arch='b',
        pretrain_img_size=384,
        window_size=12,
        drop_path_rate=0.3,
        out_indices=(1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[256, 512, 1024]))
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.)
        }))
