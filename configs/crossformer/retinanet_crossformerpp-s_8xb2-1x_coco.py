# CrossFormer++-S, RetinaNet, 12 epochs, COCO. Official: 45.1 box AP.
# The base of the CrossFormer++-B config.
_base_ = './retinanet_crossformer-s_8xb2-1x_coco.py'
pretrained = 'checkpoints/crossformer-pp-s_in1k.pth'
model = dict(
    backbone=dict(
        arch='pp-s',
        # the official ++ det/seg configs use G 7 and I 8-4-2-1
        group_size=[7, 7, 7, 7],
        interval=[8, 4, 2, 1],
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))
