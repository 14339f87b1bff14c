# RMT-B, UperNet, 160k iterations, ADE20K 512x512 (official
# segmentation/configs/RMT/RMT_Uper_m_2x.py). Paper: 52.0 mIoU.
_base_ = './upernet_rmt-s_8xb2-160k_ade20k-512x512.py'
pretrained = 'checkpoints/rmt-b_in1k.pth'
model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[80, 160, 320, 512]),
    auxiliary_head=dict(in_channels=320))
