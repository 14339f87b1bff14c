# ImageNet-1k in mmpretrain's layout (data/imagenet/{train,val}/ with
# meta/{train,val}.txt and meta/classes.txt: one class name per line, in label
# order) as the classification task of a multi-task config: the embedded
# set's loaders (./imagenet_shapes_classification.py, every name cls_ so that
# it can be a second _base_ next to a COCO base) at ImageNet's root, sizes
# and batch. mmpretrain's RandomResizedCrop is not importable here
# (mmpretrain imports torchvision), so training takes a random 224 crop after
# mmdet's ResizeShortestEdge to 256 and validation the centre crop.
_base_ = './imagenet_shapes_classification.py'
cls_data_root = 'data/imagenet/'
cls_image_size = (224, 224)

cls_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='ResizeShortestEdge', scale=256),
    dict(type='RandomCrop', crop_size=cls_image_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackClsInputs')
]
cls_test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='ResizeShortestEdge', scale=256),
    dict(type='CenterCrop', crop_size=cls_image_size),
    dict(type='PackClsInputs')
]
cls_train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    dataset=dict(data_root=cls_data_root, pipeline=cls_train_pipeline))
cls_val_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    dataset=dict(data_root=cls_data_root, pipeline=cls_test_pipeline))
