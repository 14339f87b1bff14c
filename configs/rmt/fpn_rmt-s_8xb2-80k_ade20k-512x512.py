# RMT-S, Semantic FPN, 80k iterations, ADE20K 512x512 (official
# segmentation/configs/RMT/RMT_FPN_s_1x.py). Paper: 49.4 mIoU.
_base_ = './fpn_rmt-t_8xb2-80k_ade20k-512x512.py'
pretrained = 'checkpoints/rmt-s_in1k.pth'
model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.15,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))
