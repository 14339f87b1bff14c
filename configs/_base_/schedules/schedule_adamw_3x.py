# mmdet's Swin 3x schedule
# (mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py): the AdamW of
# ./schedule_adamw_1x.py for 36 epochs, steps at 27 and 33.
_base_ = './schedule_adamw_1x.py'
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[27, 33],
        gamma=0.1)
]
