# RMT-L, Semantic FPN, 80k iterations, ADE20K 512x512 (official
# segmentation/configs/RMT/RMT_FPN_l_1x.py). Paper: 51.4 mIoU.
_base_ = './fpn_rmt-t_8xb2-80k_ade20k-512x512.py'
pretrained = 'checkpoints/rmt-l_in1k.pth'
model = dict(
    backbone=dict(
        arch='l',
        drop_path_rate=0.5,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[112, 224, 448, 640]))
