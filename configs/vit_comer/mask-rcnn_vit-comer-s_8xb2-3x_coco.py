# ViT-CoMer-S (DINOv2-S init), Mask R-CNN, 36 epochs, COCO (official 3x:
# 52.1 box / 45.8 mask; official layer decay 0.7 not used here).
_base_ = './mask-rcnn_vit-comer-s_8xb2-1x_coco.py'
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[27, 33],
        gamma=0.1)
]
