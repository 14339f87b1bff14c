# CrossFormer-L, UperNet, 160k iterations, ADE20K 512x512. Official: 50.4 mIoU
# (single scale).
_base_ = './upernet_crossformer-s_8xb2-160k_ade20k-512x512.py'
pretrained = 'checkpoints/crossformer-l_in1k.pth'
model = dict(
    backbone=dict(
        arch='l',
        drop_path_rate=0.5,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
