# ViT-CoMer-B (DINOv2-B init), Mask R-CNN, 12 epochs, COCO (official
# mask_rcnn_dinov2_comer_base_fpn_1x_coco.py: 52.0 box / 45.5 mask; official
# layer decay 0.6 not used here).
_base_ = './mask-rcnn_vit-comer-s_8xb2-1x_coco.py'
pretrained = 'https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth'  # noqa
model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[768, 768, 768, 768]))
