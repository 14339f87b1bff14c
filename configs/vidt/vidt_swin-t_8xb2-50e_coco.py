# ViDT, Swin-T with RAM, 100 [DET] tokens, 50 epochs on COCO: the official
# release command (naver-ai/vidt @5207d04 README: --method vidt
# --backbone_name swin_tiny --epochs 50 --lr 1e-4 --min-lr 1e-7
# --batch_size 2 x 8 GPUs --aux_loss True --with_box_refine True) with the
# defaults of its arguments.py, on mmdet 3.x. The shared base of this folder.
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/default_runtime.py'
]
embed_dims = 256  # official reduced_dim = pos_dim
num_levels = 4
num_classes = 80

model = dict(
    type='ViDT',
    num_queries=100,  # = backbone.det_token_num
    with_box_refine=True,
    num_feature_levels=num_levels,
    det_channels=768,  # the [DET] tokens after Swin-T's last stage
    pos_channels=embed_dims,
    # the official preprocessing: RGB, ImageNet mean/std, zero-padded to the
    # largest image of the batch with a padding mask
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='SwinRAM',
        arch='t',
        window_size=7,
        det_token_num=100,
        pos_dims=embed_dims,
        reduced_dims=embed_dims,
        cross_indices=(3, ),
        out_indices=(1, 2, 3, 4),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/SwinTransformer/storage/releases/'
            'download/v1.0.0/swin_tiny_patch4_window7_224.pth')),
    # the official input_proj: 1x1 conv (with bias) + GN(32) per level
    neck=dict(
        type='ChannelMapper',
        in_channels=[192, 384, 768, embed_dims],
        kernel_size=1,
        out_channels=embed_dims,
        act_cfg=None,
        bias=True,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=num_levels),
    decoder=dict(  # encoder-free: 6 deformable decoder layers
        num_layers=6,
        return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=embed_dims,
                num_heads=8,
                dropout=0.1,
                batch_first=True),
            cross_attn_cfg=dict(
                embed_dims=embed_dims,
                num_heads=8,
                num_levels=num_levels,
                num_points=4,
                dropout=0.1,
                batch_first=True),
            ffn_cfg=dict(
                embed_dims=embed_dims,
                feedforward_channels=1024,
                ffn_drop=0.1)),
        post_norm_cfg=None),
    bbox_head=dict(
        type='DeformableDETRHead',
        num_classes=num_classes,
        embed_dims=embed_dims,
        sync_cls_avg_factor=True,
        loss_cls=dict(
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=2.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                # the official matcher adds 1e-8 inside its focal logs
                dict(type='FocalLossCost', weight=2.0, eps=1e-8),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=100))  # official PostProcess: top 100

# DETR augmentation (official datasets/coco.py make_coco_transforms)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [
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
                    scales=[(400, 4200), (500, 4200), (600, 4200)],
                    keep_ratio=True),
                dict(
                    type='RandomCrop',
                    crop_type='absolute_range',
                    crop_size=(384, 600),
                    allow_negative_crop=True),
                dict(
                    type='RandomChoiceResize',
                    scales=[(480, 1333), (512, 1333), (544, 1333), (576, 1333),
                            (608, 1333), (640, 1333), (672, 1333), (704, 1333),
                            (736, 1333), (768, 1333), (800, 1333)],
                    keep_ratio=True)
            ]
        ]),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    batch_size=2,
    dataset=dict(
        filter_cfg=dict(filter_empty_gt=False), pipeline=train_pipeline))
# official evaluation size: shorter side 800, longer at most 1333
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# official optimiser (main.py build_optimizer): AdamW lr 1e-4 for the whole
# model (backbone included), weight decay 1e-4 except the backbone's [DET]
# parameters, position tables and norms; gradient clipping 0.1
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={
            'backbone.det_token': dict(decay_mult=0.0),
            'backbone.det_pos_embed': dict(decay_mult=0.0),
            'relative_position_bias_table': dict(decay_mult=0.0),
            'backbone.patch_embed.norm': dict(decay_mult=0.0),
        }))

# official "warmupcos" without warmup epochs: cosine per epoch to 1e-7
max_epochs = 50
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs,
        eta_min=1e-7,
        begin=0,
        end=max_epochs,
        by_epoch=True)
]
# official: 8 GPUs x 2 images
auto_scale_lr = dict(base_batch_size=16)
