# ViT-CoMer-B (DINOv2-B init), Mask R-CNN, 36 epochs, COCO (official 3x:
# 54.2 box / 47.6 mask).
_base_ = './mask-rcnn_vit-comer-s_8xb2-3x_coco.py'
pretrained = 'https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth'  # noqa
model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[768, 768, 768, 768]))
