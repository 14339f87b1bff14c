# RMT-B, Mask R-CNN, 12 epochs, COCO (official
# detect/configs/RMT/maskrcnn_m_1x.py). Paper: 51.1 box / 45.5 mask.
_base_ = './mask-rcnn_rmt-t_8xb2-1x_coco.py'
pretrained = 'checkpoints/rmt-b_in1k.pth'
model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[80, 160, 320, 512]))
