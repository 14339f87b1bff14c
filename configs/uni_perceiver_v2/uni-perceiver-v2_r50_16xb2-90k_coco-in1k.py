# Uni-Perceiver v2, ResNet-50 (ImageNet-1k), one generalist for COCO detection
# + instance segmentation and ImageNet-1k classification (paper Sec. 4, the R50
# setting of its ablations, part-1 tasks only). The shared base of this
# folder's full-size configs; what the paper leaves open and what was chosen
# is in ./README.md. Needs `roberta-base` in HF format at checkpoints/
# roberta-base (e.g. `huggingface-cli download FacebookAI/roberta-base
# --local-dir checkpoints/roberta-base`).
_base_ = [
    '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/datasets/imagenet_classification.py',
    '../_base_/default_runtime.py'
]
embed_dims = 256
num_levels = 4
text_model = 'checkpoints/roberta-base'

model = dict(
    type='UniPerceiverV2',
    num_queries=900,  # O proposals
    with_box_refine=True,
    as_two_stage=True,
    num_feature_levels=num_levels,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(
        type='ChannelMapper',
        in_channels=[512, 1024, 2048],
        kernel_size=1,
        out_channels=embed_dims,
        act_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=num_levels),
    encoder=dict(
        num_layers=6,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=embed_dims, num_levels=num_levels, dropout=0.0),
            ffn_cfg=dict(
                embed_dims=embed_dims,
                feedforward_channels=2048,
                ffn_drop=0.0))),
    decoder=dict(
        num_layers=6,
        return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=embed_dims, num_heads=8, dropout=0.0),
            cross_attn_cfg=dict(
                embed_dims=embed_dims, num_levels=num_levels, dropout=0.0),
            ffn_cfg=dict(
                embed_dims=embed_dims,
                feedforward_channels=2048,
                ffn_drop=0.0)),
        post_norm_cfg=None),
    positional_encoding=dict(
        num_feats=embed_dims // 2,
        normalize=True,
        offset=-0.5,
        temperature=10000),
    bbox_head=dict(
        type='DINOHead',
        num_classes=1,  # binary proposals (paper Sec. 3.2)
        embed_dims=embed_dims,
        sync_cls_avg_factor=True,
        loss_cls=dict(
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=100)),
    task_classes=dict(
        detection=dict(dataset='CocoDataset'),  # its 80 class names
        classification=_base_.cls_data_root + 'meta/classes.txt'),
    # roberta-base's architecture; its weights are loaded by init_weights
    text_encoder=dict(
        model=dict(
            vocab_size=50265,
            max_position_embeddings=514,
            type_vocab_size=1,
            layer_norm_eps=1e-5),
        tokenizer=text_model,
        pretrained=text_model,
        max_length=32),
    # BERT-base width, 6 layers, conditional MoE in every FFN (Sec. 3.3)
    unified_decoder=dict(
        num_layers=6,
        embed_dims=768,
        num_heads=12,
        feedforward_channels=3072,
        num_experts=8,
        top_k=2,
        drop_path=0.1),
    global_tokens=dict(num_queries=8, num_heads=8, level=2),
    mask_cfg=dict(num_points=12544),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='FocalLossCost', weight=2.0),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=100))

# unmixed sampling: every iteration one task, on every GPU
max_iters = 90000
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    sampler=dict(type='InfiniteSampler', shuffle=True))
train_cfg = dict(
    _delete_=True,
    type='UnmixedTrainLoop',
    max_iters=max_iters,
    val_interval=10000,
    primary_task='detection',
    task_weights=dict(detection=1.0, classification=1.0),
    extra_dataloaders=dict(classification=_base_.cls_train_dataloader))
val_cfg = dict(
    _delete_=True,
    type='MultiTaskValLoop',
    extra_tasks=dict(
        classification=dict(
            dataloader=_base_.cls_val_dataloader,
            evaluator=_base_.cls_val_evaluator)))
test_cfg = dict(
    _delete_=True,
    type='MultiTaskTestLoop',
    extra_tasks=dict(
        classification=dict(
            dataloader=_base_.cls_val_dataloader,
            evaluator=_base_.cls_val_evaluator)))
# task-balanced gradient normalization (MT-AdamW); the backbone and the
# pre-trained text encoder at a tenth of the learning rate
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='MTAdamW',
        lr=1e-4,
        weight_decay=0.05,
        task_sampling_weights=dict(detection=1.0, classification=1.0)),
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(lr_mult=0.1),
            'text_encoder': dict(lr_mult=0.1),
            'norm': dict(decay_mult=0.)
        }))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[80000],
        gamma=0.1)
]
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=10000, max_keep_ckpts=3),
    logger=dict(type='LoggerHook', interval=50))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=32)
