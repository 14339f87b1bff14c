# CrossFormer-L, Semantic FPN, 80k iterations, ADE20K 512x512. Official: 49.1
# mIoU.
_base_ = './fpn_crossformer-s_8xb2-80k_ade20k-512x512.py'
pretrained = 'checkpoints/crossformer-l_in1k.pth'
model = dict(
    backbone=dict(
        arch='l',
        drop_path_rate=0.5,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
