# ViT-CoMer-S (DINOv2-S init), Mask R-CNN, 12 epochs, COCO.
# Follows Traffic-X/ViT-CoMer detection/configs/mask_rcnn/dinov2/
# mask_rcnn_dinov2_comer_small_fpn_1x_coco.py (official: 48.6 box / 42.9 mask)
# except: no layer-wise lr decay (official: 0.7) and fp32 (official: fp16).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/schedules/schedule_1x.py', '../_base_/default_runtime.py'
]
# raw DINOv2 weights: the loader resizes the 14x14 patch kernel to 16x16 and
# keeps the 37x37 position grid (pretrain_size 592 = 37 * 16)
pretrained = 'https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth'  # noqa
model = dict(
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
    neck=dict(in_channels=[384, 384, 384, 384]))

# DETR-style multi-scale + crop augmentation, as the official config
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[[
            dict(
                type='RandomChoiceResize',
                scales=[(480, 1333), (512, 1333), (544, 1333), (576, 1333),
                        (608, 1333), (640, 1333), (672, 1333), (704, 1333),
                        (736, 1333), (768, 1333), (800, 1333)],
                keep_ratio=True)
        ],
                    [
                        dict(
                            type='RandomChoiceResize',
                            scales=[(400, 1333), (500, 1333), (600, 1333)],
                            keep_ratio=True),
                        dict(
                            type='RandomCrop',
                            crop_type='absolute_range',
                            crop_size=(384, 600),
                            allow_negative_crop=True),
                        dict(
                            type='RandomChoiceResize',
                            scales=[(480, 1333), (512, 1333), (544, 1333),
                                    (576, 1333), (608, 1333), (640, 1333),
                                    (672, 1333), (704, 1333), (736, 1333),
                                    (768, 1333), (800, 1333)],
                            keep_ratio=True)
                    ]]),
    dict(
        type='RandomCrop',
        crop_type='absolute_range',
        crop_size=(1024, 1024),
        allow_negative_crop=True),
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999),
        weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'level_embed': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.),
            'gamma': dict(decay_mult=0.),
        }))
auto_scale_lr = dict(base_batch_size=16)
