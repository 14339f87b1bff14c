# Embedded ImageNet-format classification data (tools/dataset_converters/
# make_synthetic.py imagenet data/imagenet_shapes). For real ImageNet change
# cls_data_root (its meta/{train,val}.txt as mmpretrain's ImageNet, and a
# classes file or list) and the image size. The dataloaders are extra tasks
# of a multi-task config (train_cfg.extra_dataloaders, val_cfg/test_cfg
# .extra_tasks), not its train/val/test_dataloader; every name starts with
# cls_ so that this file can be a second _base_ next to a detection dataset
# base.
cls_data_root = 'data/imagenet_shapes/'
cls_image_size = (128, 128)

cls_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=cls_image_size, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackClsInputs')
]
cls_test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=cls_image_size, keep_ratio=False),
    dict(type='PackClsInputs')
]
cls_train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='ImageNetFolderDataset',
        data_root=cls_data_root,
        ann_file='meta/train.txt',
        classes='meta/classes.txt',
        data_prefix=dict(img_path='train'),
        pipeline=cls_train_pipeline))
cls_val_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ImageNetFolderDataset',
        data_root=cls_data_root,
        ann_file='meta/val.txt',
        classes='meta/classes.txt',
        data_prefix=dict(img_path='val'),
        test_mode=True,
        pipeline=cls_test_pipeline))
cls_val_evaluator = dict(type='ClassificationAccuracy', topk=(1, 5))
