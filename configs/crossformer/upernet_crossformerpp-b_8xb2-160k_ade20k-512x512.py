# CrossFormer++-B, UperNet, 160k iterations, ADE20K 512x512. Official: 50.7
# mIoU (single scale).
_base_ = './upernet_crossformerpp-s_8xb2-160k_ade20k-512x512.py'
pretrained = 'checkpoints/crossformer-pp-b_in1k.pth'
model = dict(
    backbone=dict(
        arch='pp-b',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
