# RMT-B, RetinaNet, 12 epochs, COCO (official
# detect/configs/RMT/retinanet_m_1x.py). Paper: 49.1 box AP.
_base_ = './retinanet_rmt-t_8xb2-1x_coco.py'
pretrained = 'checkpoints/rmt-b_in1k.pth'
model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[80, 160, 320, 512]))
