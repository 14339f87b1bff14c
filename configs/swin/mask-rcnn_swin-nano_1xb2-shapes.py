# Tiny Swin (width 16, depths 1-1-2-1) + Mask R-CNN from scratch on the
# embedded COCO-format shapes, for CPU tests and smoke runs.
_base_ = '../vit_comer/mask-rcnn_vit-comer-nano_1xb2-shapes.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='vitdense.SwinTransformer',
        embed_dims=16,
        depths=(1, 1, 2, 1),
        num_heads=(1, 2, 4, 8),
        window_size=4,
        drop_path_rate=0.1),
    neck=dict(in_channels=[16, 32, 64, 128]))
