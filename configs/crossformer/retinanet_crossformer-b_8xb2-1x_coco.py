# CrossFormer-B, RetinaNet, 12 epochs, COCO. Settings of the official detection
# configs (CrossFormer_B; AdamW, lr 1e-4, wd 1e-4). Official: 46.2 box AP.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_1x.py', '../_base_/default_runtime.py'
]
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
    neck=dict(
        in_channels=[96, 192, 384, 768],
        start_level=1,
        add_extra_convs='on_input'))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001))
