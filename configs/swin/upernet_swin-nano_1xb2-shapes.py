# Tiny Swin (width 16) + UperNet from scratch on the embedded ADE20K-format
# shapes, for CPU tests and smoke runs.
_base_ = '../vit_comer/upernet_vit-comer-nano_1xb2-shapes.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='vitdense.SwinTransformer',
        embed_dims=16,
        depths=(1, 1, 2, 1),
        num_heads=(1, 2, 4, 8),
        window_size=4,
        drop_path_rate=0.1),
    decode_head=dict(in_channels=[16, 32, 64, 128]),
    auxiliary_head=dict(in_channels=64))
