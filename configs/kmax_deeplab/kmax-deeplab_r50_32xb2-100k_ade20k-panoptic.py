# kMaX-DeepLab R50 on ADE20K panoptic, the official setting
# (bytedance/kmax-deeplab configs/ade20k/panoptic_segmentation/
# kmax_r50.yaml): 1281x1281 LSJ, 128 queries, AdamW lr 5e-4, 100k
# iterations at batch 64. ADE20K panoptic in COCO panoptic format
# (ADEChallengeData2016/ade20k_panoptic_{train,val}.json + PNG folders, as
# detectron2's prepare_ade20k_pan_seg.py / mmdet's ade20k_panoptic writes
# them): 100 thing and 50 stuff classes, things first (mmdet's
# ADE20KPanopticDataset order).
_base_ = './kmax-deeplab_r50_32xb2-150k_coco-panoptic.py'
num_things_classes = 100
num_stuff_classes = 50
data_root = 'data/ADEChallengeData2016/'
model = dict(num_things_classes=num_things_classes,
             num_stuff_classes=num_stuff_classes)
train_dataloader = dict(
    dataset=dict(
        type='ADE20KPanopticDataset',
        data_root=data_root,
        ann_file='ade20k_panoptic_train.json',
        data_prefix=dict(img='images/training/',
                         seg='ade20k_panoptic_train/')))
val_dataloader = dict(
    dataset=dict(
        type='ADE20KPanopticDataset',
        data_root=data_root,
        ann_file='ade20k_panoptic_val.json',
        data_prefix=dict(img='images/validation/',
                         seg='ade20k_panoptic_val/')))
test_dataloader = val_dataloader
val_evaluator = dict(
    ann_file=data_root + 'ade20k_panoptic_val.json',
    seg_prefix=data_root + 'ade20k_panoptic_val/')
test_evaluator = val_evaluator
max_iters = 100000
train_cfg = dict(max_iters=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=5000),
    dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=5000,
         end=max_iters)
]
