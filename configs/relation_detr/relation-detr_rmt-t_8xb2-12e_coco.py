# Relation-DETR, RMT-T (IN-1K), 12 epochs.
# Stages 2-4 + one extra level (4 levels), as the R50 and Swin configs; the
# backbone settings of ../rmt/mask-rcnn_rmt-t_8xb2-1x_coco.py (official
# SyncBN, drop path 0.1) and the Relation-DETR optimiser of the base
# (backbone lr x0.1).
_base_ = './relation-detr_r50_8xb2-12e_coco.py'
# Official ImageNet-1K RMT-T weights are on Baidu Pan only (qhfan/RMT
# README); init_cfg reads the official file as is.
pretrained = 'checkpoints/rmt-t_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='RMT',
        arch='t',
        drop_path_rate=0.1,
        out_indices=(1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512]))
