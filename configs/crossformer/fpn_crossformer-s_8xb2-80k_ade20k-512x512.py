# CrossFormer-S, Semantic FPN, 80k iterations, ADE20K 512x512. Settings of the
# official segmentation/configs/crossformer*/fpn_*_ade20k_40k.py (which run
# 80k: AdamW, lr 1e-4, wd 1e-4, poly 0.9 to 0). Official: 46.4 mIoU.
# The base of the other CrossFormer(++) FPN configs.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py', 'mmseg::_base_/datasets/ade20k.py',
    '../_base_/default_runtime_seg.py', '../_base_/schedules/schedule_80k.py'
]
# Official ImageNet-1K CrossFormer-S weights (Google Drive/Baidu,
# cheerss/CrossFormer README); init_cfg reads the official file as is (keys
# mapped by vitdense.models.backbones.crossformer.checkpoint_filter_fn).
pretrained = 'checkpoints/crossformer-s_in1k.pth'
crop_size = (512, 512)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='CrossFormer',
        arch='s',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]),
    decode_head=dict(num_classes=150))
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001))
param_scheduler = [
    dict(
        type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=80000,
        by_epoch=False)
]
