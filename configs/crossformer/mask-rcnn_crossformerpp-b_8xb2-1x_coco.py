# CrossFormer++-B, Mask R-CNN, 12 epochs, COCO. Official: 47.7 / 43.2.
_base_ = './mask-rcnn_crossformerpp-s_8xb2-1x_coco.py'
pretrained = 'checkpoints/crossformer-pp-b_in1k.pth'
model = dict(
    backbone=dict(
        arch='pp-b',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
