# RMT-L, Mask R-CNN, 12 epochs, COCO (official
# detect/configs/RMT/maskrcnn_l_1x.py: lr 2e-4). Paper: 51.6 box / 45.9 mask.
_base_ = './mask-rcnn_rmt-t_8xb2-1x_coco.py'
pretrained = 'checkpoints/rmt-l_in1k.pth'
model = dict(
    backbone=dict(
        arch='l',
        drop_path_rate=0.5,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[112, 224, 448, 640]))
optim_wrapper = dict(optimizer=dict(lr=0.0002))
