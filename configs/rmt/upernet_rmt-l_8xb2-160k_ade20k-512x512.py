# RMT-L, UperNet, 160k iterations, ADE20K 512x512 (official
# segmentation/configs/RMT/RMT_Uper_l_2x.py). Paper: 52.8 mIoU.
_base_ = './upernet_rmt-s_8xb2-160k_ade20k-512x512.py'
pretrained = 'checkpoints/rmt-l_in1k.pth'
model = dict(
    backbone=dict(
        arch='l',
        drop_path_rate=0.5,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[112, 224, 448, 640]),
    auxiliary_head=dict(in_channels=448))
