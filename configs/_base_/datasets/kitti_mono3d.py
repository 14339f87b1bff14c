# KITTI object, camera 2, monocular 3D detection with the data setting of the
# official MonoDETR / MonoDINO-DETR config (JihyeokKim/MonoDINO-DETR@65004cc,
# configs/monodinodetr.yaml): train on ImageSets/train.txt (3712 frames),
# evaluate on ImageSets/val.txt (3769), Car only (its writelist; for the three
# KITTI classes set metainfo classes=('Pedestrian', 'Car', 'Cyclist')), a
# 1280x384 affine input, photometric distortion, flip 0.5, crop 0.5 (scale and
# shift 0.05) with the depth target scaled by the crop (depth_scale 'normal'),
# batch 8. Layout: data/kitti/ImageSets/{train,val,trainval,test}.txt (the
# official repository's), data/kitti/training/{image_2,label_2,calib}; the
# KITTI test split reads testing/{image_2,calib} without a 'label' prefix.
# Pictures: configs/_base_/default_runtime_kitti.py (KittiMonoVisualizer).
# Transforms: vitdense/datasets/transforms/mono3d.py (PhotoMetricDistortion is
# mmdet's, equivalent to the official one, see there).
dataset_type = 'KittiMonoDataset'
data_root = 'data/kitti/'
metainfo = dict(classes=('Car', ))
input_size = (1280, 384)  # (width, height)
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
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
    dict(type='FilterMono3DAnnotations'),
    dict(type='PackMono3DInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadMono3DAnnotations'),
    dict(type='Mono3DAffine', input_size=input_size),
    dict(type='PackMono3DInputs')
]
data_prefix = dict(
    img='training/image_2', label='training/label_2', calib='training/calib')
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        data_prefix=data_prefix,
        metainfo=metainfo,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        data_prefix=data_prefix,
        metainfo=metainfo,
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='KittiMetric')
test_evaluator = val_evaluator
