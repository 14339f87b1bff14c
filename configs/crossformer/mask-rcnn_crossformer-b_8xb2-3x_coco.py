# CrossFormer-B, Mask R-CNN, 36 epochs, multi-scale + crop, COCO. Official
# (detection/README.md): 49.8 / 44.5.
_base_ = './mask-rcnn_crossformer-s_8xb2-3x_coco.py'
pretrained = 'checkpoints/crossformer-b_in1k.pth'
model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
