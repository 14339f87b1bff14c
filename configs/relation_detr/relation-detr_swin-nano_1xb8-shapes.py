# Tiny Relation-DETR for the CPU demo: the DINO demo
# (configs/demo/dino_swin-nano_1xb8-shapes.py: a small Swin from scratch on
# the embedded 128x128 shapes, width 128, 3 + 3 layers, 100 queries, 50
# denoising queries, same schedule) plus what Relation-DETR adds: memory
# fusion, the position-relation bias, 200 hybrid queries and the IoU-aware
# varifocal class loss, with the official positional encoding.
_base_ = '../demo/dino_swin-nano_1xb8-shapes.py'

model = dict(
    type='RelationDETR',
    num_hybrid_queries=200,
    decoder=dict(relation=True, query_scale=True),
    positional_encoding=dict(offset=-0.5, temperature=10000),
    bbox_head=dict(
        type='RelationDETRHead',
        hybrid_assign=6,
        loss_cls=dict(
            _delete_=True,
            type='IoUVarifocalLoss',
            alpha=0.25,
            gamma=2.0,
            loss_weight=1.0)))
