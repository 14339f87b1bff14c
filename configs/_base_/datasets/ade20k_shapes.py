# Embedded ADE20K-format data (make_synthetic.py ade20k data/ade20k_shapes):
# mmseg's ADE20K pipeline at a small crop. For ADE20K change data_root and
# the scales. Labels load through LoadValidatedSegAnnotations, which names the
# PNG that is undecodable, not single-channel, not its image's size or holds
# values outside ADE20K's 150 classes; the metric warns when every label
# pixel is ignored (it would print NaN).
_base_ = 'mmseg::_base_/datasets/ade20k.py'

data_root = 'data/ade20k_shapes'
crop_size = (64, 64)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='LoadValidatedSegAnnotations',
        reduce_zero_label=True,
        num_classes=150),
    dict(
        type='RandomResize',
        scale=(160, 128),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(160, 128), keep_ratio=True),
    dict(
        type='LoadValidatedSegAnnotations',
        reduce_zero_label=True,
        num_classes=150),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='vitdense.ValidatedIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
