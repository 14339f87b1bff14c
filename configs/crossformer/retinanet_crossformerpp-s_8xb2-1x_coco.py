# CrossFormer++-S, RetinaNet, 12 epochs, COCO. Settings of the official
# detection configs (CrossFormer_S2; AdamW, lr 1e-4, wd 1e-4). Official: 45.1
# box AP.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_1x.py', '../_base_/default_runtime.py'
]
# Official ImageNet-1K CrossFormer++-S weights (Baidu, cheerss/CrossFormer
# README); init_cfg reads the official file as is (keys mapped by
# vitdense.models.backbones.crossformer.checkpoint_filter_fn).
pretrained = 'checkpoints/crossformer-pp-s_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='CrossFormer',
        arch='pp-s',
        # the official ++ det/seg configs use G 7 and I 8-4-2-1
        group_size=[7, 7, 7, 7],
        interval=[8, 4, 2, 1],
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        in_channels=[64, 128, 256, 512],
        start_level=1,
        add_extra_convs='on_input'))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001))
