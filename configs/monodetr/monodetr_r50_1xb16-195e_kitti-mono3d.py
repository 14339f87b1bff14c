# MonoDETR, ResNet-50, KITTI train -> val, Car: the official setting
# (ZrrSkywalker/MonoDETR@6994b9f configs/monodetr.yaml; one GPU, batch 16,
# 195 epochs), the baseline of MonoDINO-DETR: the ImageNet ResNet-50 of
# torchvision (frozen BN, stem and stage 1 frozen) on the 1280x384 affine
# input, stages 2-4 + one stride-2 level mapped to width 256 (4 levels), the
# depth predictor on the levels (80 + 1 LID bins over 0-60 m, stride-16
# map), 3 + 3 transformer layers at width 256 (FFN 256, 8 heads, 4 points,
# dropout 0.1), 50 queries x 11 groups (the first group at inference) without
# DAB, box refinement, the official loss weights and match costs, top-50
# decoding above 0.2; AdamW 2e-4, steps at 125 and 165
# (schedule_adamw_195e.py); the checkpoint with the best Car moderate
# AP3D|R40 is kept, as the official trainer does. Official checkpoints:
# tools/model_converters/monodetr2vitdense.py. The official class head has 3
# logits (yaml num_classes: 3, Car = 1) of which only Car is trained; here it
# has the one class of the data.
_base_ = [
    '../_base_/datasets/kitti_mono3d.py',
    '../_base_/default_runtime_kitti.py',
    '../_base_/schedules/schedule_adamw_195e.py'
]
embed_dims = 256

model = dict(
    type='MonoDETR',
    num_classes=1,
    embed_dims=embed_dims,
    num_heads=8,
    feedforward_channels=256,
    dropout=0.1,
    num_points=4,
    num_encoder_layers=3,
    num_decoder_layers=3,
    num_queries=50,
    num_groups=11,
    use_dab=False,
    # the official normalisation (img / 255, ImageNet mean and std) of the
    # RGB image; the input has the fixed affine size, nothing is padded
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        zero_init_residual=False,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.pytorch.org/models/'
            'resnet50-0676ba61.pth')),
    neck=dict(
        type='ChannelMapper',
        in_channels=[512, 1024, 2048],
        out_channels=embed_dims,
        kernel_size=1,
        act_cfg=None,
        bias=True,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=4),
    depth_predictor=dict(
        num_depth_bins=80,
        depth_min=1e-3,
        depth_max=60.,
        num_heads=8,
        feedforward_channels=256),
    criterion=dict(test_cfg=dict(topk=50, score_thr=0.2)))

train_dataloader = dict(batch_size=16)
default_hooks = dict(
    checkpoint=dict(
        type='CheckpointHook',
        interval=1,
        max_keep_ckpts=1,
        save_best='kitti/Car_3D_moderate_R40',
        rule='greater'))
# official random_seed 444
randomness = dict(seed=444)
auto_scale_lr = dict(base_batch_size=16)
