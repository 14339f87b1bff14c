# Tiny ViDT+ on the embedded COCO-format shapes with instance masks, on a
# CPU: ./vidt_swin-nano_1xb8-shapes.py with the four ViDT+ switches of
# ./vidt-plus_swin-t_8xb2-50e_coco.py on (EPFF neck, IoU-aware loss, UQR
# masks evaluated as COCO `segm`, token labeling).
_base_ = './vidt_swin-nano_1xb8-shapes.py'
embed_dims = 128

model = dict(
    neck=dict(
        _delete_=True,
        type='EPFF',
        in_channels=[96, 192, 384, embed_dims],
        out_channels=embed_dims),
    bbox_head=dict(
        type='ViDTHead',
        loss_iou_aware=dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=2.0),
        with_mask_vectors=True),
    token_label_head=dict(type='TokenLabelHead'))

train_pipeline = _base_.train_pipeline
train_pipeline[1] = dict(
    type='LoadAnnotations', with_bbox=True, with_mask=True)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator

# The same wall time as ./vidt_swin-nano_1xb8-shapes.py: 1750 iterations at
# 0.455 s (masks, EPFF and the extra losses), the step at 87%.
max_iters = 1750
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = _base_.param_scheduler
param_scheduler[1].update(end=max_iters, milestones=[1520])
default_hooks = dict(checkpoint=dict(interval=max_iters))
