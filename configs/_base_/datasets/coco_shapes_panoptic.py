# Embedded COCO-format panoptic shapes: 3 thing and 2 stuff classes.
_base_ = 'mmdet::_base_/datasets/coco_panoptic.py'

data_root = 'data/coco_shapes/'
metainfo = dict(
    thing_classes=('circle', 'square', 'triangle'),
    stuff_classes=('sky', 'ground'),
    classes=('circle', 'square', 'triangle', 'sky', 'ground'))
image_size = (128, 128)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadValidatedPanopticAnnotations', with_bbox=True,
         with_mask=True, with_seg=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadValidatedPanopticAnnotations', with_bbox=True,
         with_mask=True, with_seg=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        type='ValidatedCocoPanopticDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/panoptic_train.json',
        data_prefix=dict(img='train/', seg='annotations/panoptic_train/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        type='ValidatedCocoPanopticDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/panoptic_val.json',
        data_prefix=dict(img='val/', seg='annotations/panoptic_val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
# mmdet's loader and CocoPanopticMetric need panopticapi (not on PyPI);
# vitdense's give the same results without it.
val_evaluator = dict(
    type='VitdenseCocoPanopticMetric',
    ann_file=data_root + 'annotations/panoptic_val.json',
    seg_prefix=data_root + 'annotations/panoptic_val/')
test_evaluator = val_evaluator
