# RMT-B, Semantic FPN, 80k iterations, ADE20K 512x512 (official
# segmentation/configs/RMT/RMT_FPN_m_1x.py). Paper: 50.4 mIoU.
_base_ = './fpn_rmt-t_8xb2-80k_ade20k-512x512.py'
pretrained = 'checkpoints/rmt-b_in1k.pth'
model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[80, 160, 320, 512]))
