# RMT-S, Mask R-CNN, 12 epochs, COCO (official
# detect/configs/RMT/maskrcnn_s_1x.py). Paper: 49.0 box / 43.9 mask.
_base_ = './mask-rcnn_rmt-t_8xb2-1x_coco.py'
pretrained = 'checkpoints/rmt-s_in1k.pth'
model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.15,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))
