# ViDT+, Swin-T with RAM, 300 [DET] tokens, 50 epochs on COCO: the official
# vidt-plus release command (naver-ai/vidt @a8c48b5 README: --method vidt
# --backbone_name swin_tiny --epochs 50 --det_token_num 300 --epff True
# --token_label True --iou_aware True --with_vector True --masks True) on
# ./vidt_swin-t_8xb2-50e_coco.py, which gives everything else. Each ViDT+
# switch is independent: EPFF `neck`, `loss_iou_aware`, `with_mask_vectors`
# (UQR; COCO `segm`), `token_label_head` (training needs instance masks).
_base_ = './vidt_swin-t_8xb2-50e_coco.py'
embed_dims = 256

model = dict(
    num_queries=300,
    backbone=dict(det_token_num=300),
    # official FPNFusionModule(backbone.num_channels, fuse_dim=reduced_dim)
    neck=dict(
        _delete_=True,
        type='EPFF',
        in_channels=[192, 384, 768, embed_dims],
        out_channels=embed_dims),
    bbox_head=dict(
        type='ViDTHead',
        # official iouaware_loss_coef 2
        loss_iou_aware=dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=2.0),
        # official n_keep 256, gt_mask_len 128, vector_hidden_dim 256,
        # vector_loss_coef 3
        with_mask_vectors=True),
    # official token_loss_coef 2 (focal and dice)
    token_label_head=dict(type='TokenLabelHead'))

# instance masks for the UQR targets and token labels
train_pipeline = _base_.train_pipeline
train_pipeline[1] = dict(
    type='LoadAnnotations', with_bbox=True, with_mask=True)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator
