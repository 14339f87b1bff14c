# ViT-CoMer-T (DeiT-T init), Mask R-CNN, 12 epochs, COCO. No official config
# (paper Table 1: 42.1 box / 38.0 mask); global attention, DeiT grid (224).
_base_ = './mask-rcnn_vit-comer-s_8xb2-1x_coco.py'
pretrained = 'https://dl.fbaipublicfiles.com/deit/deit_tiny_patch16_224-a1311bcf.pth'  # noqa
model = dict(
    backbone=dict(
        arch='t',
        pretrain_size=224,
        window_attn=False,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 192, 192, 192]))
