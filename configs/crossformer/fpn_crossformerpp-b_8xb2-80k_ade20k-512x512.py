# CrossFormer++-B, Semantic FPN, 80k iterations, ADE20K 512x512. Official: 48.6
# mIoU.
_base_ = './fpn_crossformerpp-s_8xb2-80k_ade20k-512x512.py'
pretrained = 'checkpoints/crossformer-pp-b_in1k.pth'
model = dict(
    backbone=dict(
        arch='pp-b',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
