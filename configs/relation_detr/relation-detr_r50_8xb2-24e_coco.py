# Relation-DETR, ResNet-50, 24 epochs (paper: 52.1 AP); lr step at epoch 20.
_base_ = './relation-detr_r50_8xb2-12e_coco.py'
max_epochs = 24
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[20],
        gamma=0.1)
]
