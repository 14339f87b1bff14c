# CrossFormer-B, Mask R-CNN, 36 epochs, multi-scale + crop, COCO. The official
# repo publishes the result (detection/README.md: 49.8 / 44.5) but no
# config; this uses mmdet's Swin 3x recipe (AdamW, lr 1e-4, wd 0.05).
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'
custom_imports = dict(imports=['vitdense'], allow_failed_imports=False)
# Official ImageNet-1K CrossFormer-B weights (Google Drive/Baidu,
# cheerss/CrossFormer README); init_cfg reads the official file as is (keys
# mapped by vitdense.models.backbones.crossformer.checkpoint_filter_fn).
pretrained = 'checkpoints/crossformer-b_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='CrossFormer',
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
