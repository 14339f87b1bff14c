# CrossFormer-S, RetinaNet, 12 epochs, COCO. Settings of the official detection
# configs (CrossFormer_S; AdamW, lr 1e-4, wd 1e-4). Official: 44.4 box AP.
# The base of the other CrossFormer(++) RetinaNet configs.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_1x.py', '../_base_/default_runtime.py'
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
    neck=dict(
        in_channels=[96, 192, 384, 768],
        start_level=1,
        add_extra_convs='on_input'))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001))
