# Tiny MonoDETR trained from scratch on the embedded KITTI data on a CPU: the
# side-by-side baseline of monodino-detr_vit-nano_1xb4-kitti-shapes.py, whose
# data, input (320x96), transformer (width 128, FFN 256, 8 heads, 3 + 3
# layers), 20 queries x 3 groups, depth predictor, losses and decoding it
# inherits, and its wall time (12.4 minutes: 2860 iterations at 0.26 s on 2
# CPU cores, measured alone, the step at 86%); only the feature extractor
# differs, as in the papers: a ResNet-18 of base width 32 (64/128/256
# channels at strides 8/16/32, trained, BN too: nothing is pretrained), one
# extra stride-2 level (4 levels), MonoDETR's depth predictor on the levels
# (stride-16 map) and its Deformable-DETR queries without DAB.
_base_ = '../monodino_detr/monodino-detr_vit-nano_1xb4-kitti-shapes.py'

model = dict(
    type='MonoDETR',
    use_dab=False,
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        base_channels=32,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch'),
    neck=dict(
        type='ChannelMapper',
        in_channels=[64, 128, 256],
        out_channels=_base_.embed_dims,
        kernel_size=1,
        act_cfg=None,
        bias=True,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=4))

max_iters = 2860
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = _base_.param_scheduler
param_scheduler[1].update(end=max_iters, milestones=[2460])
default_hooks = dict(checkpoint=dict(interval=max_iters))
