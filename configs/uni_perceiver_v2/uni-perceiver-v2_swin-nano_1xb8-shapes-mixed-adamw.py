# The paper's optimisation ablation on
# ./uni-perceiver-v2_swin-nano_1xb8-shapes.py: mixed sampling (every iteration
# one batch of every task, losses summed) and plain AdamW with the demo DINO's
# gradient clipping, instead of unmixed sampling and MT-AdamW.
_base_ = './uni-perceiver-v2_swin-nano_1xb8-shapes.py'
# the generalist's 10 minutes: 410 mixed steps of 1.3 s (a batch of each
# task)
max_iters = 410
train_cfg = dict(mixed=True, max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(
    optimizer=dict(
        _delete_=True, type='AdamW', lr=4e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2))
param_scheduler = _base_.param_scheduler
param_scheduler[1].update(end=max_iters, milestones=[357])
default_hooks = dict(checkpoint=dict(interval=max_iters))
