# RMT-B, Mask R-CNN, 36 epochs, multi-scale + crop (official
# detect/configs/RMT/maskrcnn_m_3x.py). Paper: 52.2 / 46.1.
_base_ = './mask-rcnn_rmt-s_8xb2-3x_coco.py'
pretrained = 'checkpoints/rmt-b_in1k.pth'
model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[80, 160, 320, 512]))
