# RMT-L, RetinaNet, 12 epochs, COCO (official
# detect/configs/RMT/retinanet_l_1x.py). Paper: 49.4 box AP.
_base_ = './retinanet_rmt-t_8xb2-1x_coco.py'
pretrained = 'checkpoints/rmt-l_in1k.pth'
model = dict(
    backbone=dict(
        arch='l',
        drop_path_rate=0.5,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[112, 224, 448, 640]))
