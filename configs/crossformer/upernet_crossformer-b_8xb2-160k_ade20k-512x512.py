# CrossFormer-B, UperNet, 160k iterations, ADE20K 512x512. Official: 49.7 mIoU
# (single scale).
_base_ = './upernet_crossformer-s_8xb2-160k_ade20k-512x512.py'
pretrained = 'checkpoints/crossformer-b_in1k.pth'
model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
