# Tiny MonoDETR trained from scratch on the embedded KITTI data on a CPU: the
# side-by-side baseline of monodino-detr_vit-nano_1xb4-kitti-shapes.py, whose
# data, input (320x96), transformer (width 128, FFN 256, 8 heads, 3 + 3
# layers), 20 queries x 3 groups, depth predictor, losses, decoding and
# schedule it inherits; only the feature extractor differs, as in the papers:
# a ResNet-18 of base width 32 (64/128/256 channels at strides 8/16/32,
# trained, BN too: nothing is pretrained), one extra stride-2 level (4
# levels), MonoDETR's depth predictor on the levels (stride-16 map) and its
# Deformable-DETR queries without DAB.
_base_ = '../monodino_detr/monodino-detr_vit-nano_1xb4-kitti-shapes.py'
embed_dims = 128

model = dict(
    _delete_=True,
    type='MonoDETR',
    num_classes=3,
    embed_dims=embed_dims,
    num_heads=8,
    feedforward_channels=256,
    dropout=0.0,
    num_queries=20,
    num_groups=3,
    use_dab=False,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
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
        out_channels=embed_dims,
        kernel_size=1,
        act_cfg=None,
        bias=True,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=4),
    depth_predictor=dict(num_heads=8, feedforward_channels=256),
    criterion=dict(test_cfg=dict(topk=20, score_thr=0.1)))
