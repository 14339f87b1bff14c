# CrossFormer-B, Semantic FPN, 80k iterations, ADE20K 512x512. Official: 48.0
# mIoU.
_base_ = './fpn_crossformer-s_8xb2-80k_ade20k-512x512.py'
pretrained = 'checkpoints/crossformer-b_in1k.pth'
model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
