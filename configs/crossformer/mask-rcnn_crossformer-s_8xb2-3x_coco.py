# CrossFormer-S, Mask R-CNN, 36 epochs, multi-scale + crop, COCO. The official
# repo publishes the result (detection/README.md: 48.7 / 43.9) but no
# config; this uses mmdet's Swin 3x recipe (AdamW, lr 1e-4, wd 0.05).
# The base of the CrossFormer-B 3x config.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/schedule_adamw_3x.py', '../_base_/default_runtime.py'
]
# Official ImageNet-1K CrossFormer-S weights (Google Drive/Baidu,
# cheerss/CrossFormer README); init_cfg reads the official file as is (keys
# mapped by vitdense.models.backbones.crossformer.checkpoint_filter_fn).
pretrained = 'checkpoints/crossformer-s_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='CrossFormer',
        arch='s',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
