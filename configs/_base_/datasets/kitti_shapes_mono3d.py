# The embedded KITTI data (tools/dataset_converters/make_synthetic.py kitti
# data/kitti_shapes): KITTI's on-disk format in flat image_2/label_2/calib
# folders, ImageSets/{train,val}.txt, frames of 0.25 x 1242x375 = 310x94
# pixels (the default --scale) with cars, pedestrians and cyclists. The
# pipeline is kitti_mono3d.py's (photometric distortion, flip, MonoDETR's
# affine with random crop and scale) at a 320x96 input, the same 0.25 of the
# official 1280x384; objects lower than 6 pixels (the official 25 at full
# scale, x0.25) are dropped from the training targets as the official
# 'UnKnown' level. KittiMetric keeps the devkit's full-scale difficulty
# heights (easy >= 40, moderate/hard >= 25 pixels), so at 0.25 scale its
# moderate level holds objects nearer than ~11 m; --scale 1 writes
# full-size frames (then use kitti_mono3d.py's sizes).
_base_ = './kitti_mono3d.py'

data_root = 'data/kitti_shapes/'
metainfo = dict(classes=('Pedestrian', 'Cyclist', 'Car'))
input_size = (320, 96)  # (width, height)
data_prefix = dict(img='image_2', label='label_2', calib='calib')

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadMono3DAnnotations'),
    dict(type='PhotoMetricDistortion'),
    dict(type='Mono3DRandomFlip', prob=0.5),
    dict(
        type='Mono3DAffine',
        input_size=input_size,
        crop_prob=0.5,
        scale=0.05,
        shift=0.05,
        depth_scale='normal'),
    dict(type='FilterMono3DAnnotations', min_height=6),
    dict(type='PackMono3DInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadMono3DAnnotations'),
    dict(type='Mono3DAffine', input_size=input_size),
    dict(type='PackMono3DInputs')
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        data_prefix=data_prefix,
        metainfo=metainfo,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        data_prefix=data_prefix,
        metainfo=metainfo,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
