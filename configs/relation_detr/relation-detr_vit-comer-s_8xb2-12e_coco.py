# Relation-DETR, ViT-CoMer-S (DINOv2-S init), 12 epochs.
# ViT-CoMer returns 4 maps (strides 4-32, all 384 wide); all of them + one
# extra level make 5 levels, as the official Relation-DETR FocalNet-L config
# does with its 4-level backbone (num_feature_levels=5). The stride-4 level
# makes the encoder ~4x longer than the 4-level R50 config. Backbone settings
# of ../vit_comer/mask-rcnn_vit-comer-s_8xb2-1x_coco.py.
_base_ = './relation-detr_r50_8xb2-12e_coco.py'
# raw DINOv2 weights: the loader resizes the 14x14 patch kernel to 16x16 and
# keeps the 37x37 position grid (pretrain_size 592 = 37 * 16)
pretrained = 'https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth'  # noqa
num_levels = 5
model = dict(
    num_feature_levels=num_levels,
    backbone=dict(
        _delete_=True,
        type='ViTCoMer',
        arch='s',
        flavour='detection',
        pretrain_size=592,
        drop_path_rate=0.2,
        window_attn=[True, True, False] * 4,
        window_size=14,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[384, 384, 384, 384], num_outs=num_levels),
    encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_levels=num_levels))),
    decoder=dict(
        layer_cfg=dict(cross_attn_cfg=dict(num_levels=num_levels))))
# Only the pre-trained ViT gets the base's backbone lr x0.1; the randomly
# initialised CNN branch and interactions train at the full lr, as in the
# official ViT-CoMer recipes (which also apply layer decay 0.7; not here).
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            '_delete_': True,
            'backbone.patch_embed': dict(lr_mult=0.1),
            'backbone.pos_embed': dict(lr_mult=0.1),
            'backbone.blocks': dict(lr_mult=0.1),
        }))
