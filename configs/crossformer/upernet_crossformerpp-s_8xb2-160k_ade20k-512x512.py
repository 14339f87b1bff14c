# CrossFormer++-S, UperNet, 160k iterations, ADE20K 512x512. Official: 49.4
# mIoU (single scale).
# The base of the CrossFormer++-B config.
_base_ = './upernet_crossformer-s_8xb2-160k_ade20k-512x512.py'
pretrained = 'checkpoints/crossformer-pp-s_in1k.pth'
model = dict(
    backbone=dict(
        arch='pp-s',
        # the official ++ det/seg configs use G 7 and I 8-4-2-1
        group_size=[7, 7, 7, 7],
        interval=[8, 4, 2, 1],
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))
