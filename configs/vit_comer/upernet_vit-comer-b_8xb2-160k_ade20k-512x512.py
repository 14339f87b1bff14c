# ViT-CoMer-B (DeiT-B init), UperNet, 160k, ADE20K 512x512 (official
# upernet_vit_comer_base_512_160k_ade20k.py: 48.8 mIoU; MRFP ratio 1.0).
_base_ = './upernet_vit-comer-t_8xb2-160k_ade20k-512x512.py'
pretrained = 'https://dl.fbaipublicfiles.com/deit/deit_base_patch16_224-b5f2ef4d.pth'  # noqa
model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[768, 768, 768, 768]),
    auxiliary_head=dict(in_channels=768))
optim_wrapper = dict(optimizer=dict(lr=6e-5))
