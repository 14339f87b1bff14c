# The demo config shrunk for tests: 64x64 images, 2+2 layers, a few iters.
# Tests set data_root and work_dir through --cfg-options.
_base_ = '../../../configs/demo/dino_swin-nano_1xb8-shapes.py'

image_size = (64, 64)
model = dict(
    num_queries=20,
    backbone=dict(embed_dims=32, drop_path_rate=0.0, num_heads=(1, 2, 4, 8)),
    neck=dict(in_channels=[64, 128, 256], out_channels=64,
              norm_cfg=dict(type='GN', num_groups=8)),
    encoder=dict(num_layers=1, layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=64),
        ffn_cfg=dict(embed_dims=64, feedforward_channels=128))),
    decoder=dict(num_layers=2, layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=64, num_heads=4),
        cross_attn_cfg=dict(embed_dims=64),
        ffn_cfg=dict(embed_dims=64, feedforward_channels=128))),
    positional_encoding=dict(num_feats=32),
    bbox_head=dict(embed_dims=64),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=10)),
    test_cfg=dict(max_per_img=20))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=4, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 6
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    checkpoint=dict(interval=3, max_keep_ckpts=3),
    logger=dict(interval=1))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3)
]
