# The MonoDETR / MonoDINO-DETR KITTI schedule (JihyeokKim/MonoDINO-DETR@65004cc
# configs/monodinodetr.yaml, lib/helpers/{optimizer,scheduler}_helper.py and
# trainer_helper.py): AdamW, lr 2e-4, weight decay 1e-4 on every parameter
# whose name has no 'bias' (biases: 0), no warm-up, no gradient clipping,
# 195 epochs, lr x0.1 after epochs 125 and 165, validation after every epoch.
# The official AdamW scales the decay by Adam's bias correction
# (p -= lr * c_t * (wd * p + m / v)); torch's decays by lr * wd: equal after
# the first few hundred iterations.
max_epochs = 195
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={'bias': dict(decay_mult=0.)}))
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[125, 165],
        gamma=0.1)
]
# the official lr is for a total batch of 8
auto_scale_lr = dict(base_batch_size=8)
