# Relation-DETR, CrossFormer-S (IN-1K), 12 epochs.
# Stages 2-4 + one extra level (4 levels), as the R50 and Swin configs; the
# backbone settings of ../crossformer/mask-rcnn_crossformer-s_8xb2-1x_coco.py
# (drop path 0.2) and the Relation-DETR optimiser of the base (backbone lr
# x0.1).
_base_ = './relation-detr_r50_8xb2-12e_coco.py'
# Official ImageNet-1K CrossFormer-S weights (Google Drive/Baidu,
# cheerss/CrossFormer README); init_cfg reads the official file as is.
pretrained = 'checkpoints/crossformer-s_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='CrossFormer',
        arch='s',
        drop_path_rate=0.2,
        out_indices=(1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768]))
