# ViT-CoMer-S (DeiT-S init), UperNet, 160k, ADE20K 512x512 (official
# upernet_vit_comer_small_512_160k_ade20k.py: 46.5 mIoU; MRFP ratio 1.5).
_base_ = './upernet_vit-comer-t_8xb2-160k_ade20k-512x512.py'
pretrained = 'https://dl.fbaipublicfiles.com/deit/deit_small_patch16_224-cd65a155.pth'  # noqa
model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[384, 384, 384, 384]),
    auxiliary_head=dict(in_channels=384))
optim_wrapper = dict(optimizer=dict(lr=6e-5))
