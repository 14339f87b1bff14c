# CrossFormer-B, Mask R-CNN, 12 epochs, COCO. Official: 47.2 / 42.7.
_base_ = './mask-rcnn_crossformer-s_8xb2-1x_coco.py'
pretrained = 'checkpoints/crossformer-b_in1k.pth'
model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
