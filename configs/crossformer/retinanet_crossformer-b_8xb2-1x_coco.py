# CrossFormer-B, RetinaNet, 12 epochs, COCO. Official: 46.2 box AP.
_base_ = './retinanet_crossformer-s_8xb2-1x_coco.py'
pretrained = 'checkpoints/crossformer-b_in1k.pth'
model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
