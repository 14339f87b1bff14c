# kMaX-DeepLab R50 on Cityscapes panoptic, the official setting
# (bytedance/kmax-deeplab configs/cityscapes/panoptic_segmentation/
# kmax_r50.yaml): 1025x2049 crops (scale 0.5-2.0), 256 queries, an extra
# stride-2 pixel-decoder level is official but needs a stride-2 backbone
# output, which mmdet's ResNet lacks (here: strides 4-32 only), the aux
# semantic head without decoder, AdamW lr 3e-4, 60k iterations at batch 32
# (16 GPUs x 2). Cityscapes panoptic in COCO panoptic format
# (cityscapesscripts' createPanopticImgs: gtFine/cityscapes_panoptic_
# {train,val}.json + PNG folders), 8 thing and 11 stuff classes, things
# first.
_base_ = './kmax-deeplab_r50_32xb2-150k_coco-panoptic.py'
image_size = (1025, 2049)  # (h, w)
data_root = 'data/cityscapes/'
metainfo = dict(
    thing_classes=('person', 'rider', 'car', 'truck', 'bus', 'train',
                   'motorcycle', 'bicycle'),
    stuff_classes=('road', 'sidewalk', 'building', 'wall', 'fence', 'pole',
                   'traffic light', 'traffic sign', 'vegetation', 'terrain',
                   'sky'),
    classes=('person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle',
             'bicycle', 'road', 'sidewalk', 'building', 'wall', 'fence',
             'pole', 'traffic light', 'traffic sign', 'vegetation',
             'terrain', 'sky'))
model = dict(
    num_things_classes=8,
    num_stuff_classes=11,
    pad_size=image_size,
    panoptic_head=dict(
        transformer_decoder=dict(num_queries=256,
                                 aux_semantic_decoder=False)))
train_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='LoadValidatedPanopticAnnotations', with_bbox=True,
         with_mask=True, with_seg=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.5, 2.0),
         keep_ratio=True),
    # mmdet's absolute crop_size is (w, h)
    dict(type='RandomCrop', crop_size=image_size[::-1], crop_type='absolute',
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadValidatedPanopticAnnotations', with_bbox=True,
         with_mask=True, with_seg=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='gtFine/cityscapes_panoptic_train.json',
        data_prefix=dict(img='leftImg8bit/train/',
                         seg='gtFine/cityscapes_panoptic_train/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='gtFine/cityscapes_panoptic_val.json',
        data_prefix=dict(img='leftImg8bit/val/',
                         seg='gtFine/cityscapes_panoptic_val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    ann_file=data_root + 'gtFine/cityscapes_panoptic_val.json',
    seg_prefix=data_root + 'gtFine/cityscapes_panoptic_val/')
test_evaluator = val_evaluator
max_iters = 60000
train_cfg = dict(max_iters=max_iters)
optim_wrapper = dict(optimizer=dict(lr=3e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=5000),
    dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=5000,
         end=max_iters)
]
auto_scale_lr = dict(enable=False, base_batch_size=32)
