"""Helpers shared by the ViDT and ViDT+ tests: the official fixtures, a
shipped config at a fixture's size, and a small ViDT with its batches."""
import copy
import os.path as osp

import torch
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

DATA = osp.join(
    osp.dirname(osp.dirname(osp.dirname(__file__))), 'data', 'vidt')


def load_official(name: str) -> dict:
    """``tests/data/vidt/<name>``, its state dict in fp32."""
    data = torch.load(osp.join(DATA, name), weights_only=True)
    # stored in fp16, exactly: the official model ran on these fp32 values
    data['state_dict'] = {
        k: v.float() if v.is_floating_point() else v
        for k, v in data['state_dict'].items()
    }
    return data


def build(cfg: dict):
    init_default_scope('mmdet')
    import vitdense.models  # noqa: F401
    from vitdense.registry import MODELS
    model = MODELS.build(copy.deepcopy(cfg))
    model.init_weights()
    return model


def config_model(repo_root: str, config: str, settings: dict,
                 **bbox_head):
    """The shipped ``config`` with only the sizes of an official fixture
    (its ``settings``) changed, and ``bbox_head`` updated; data
    preprocessor, losses and everything else are the config's."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(repo_root, config))
    dims = settings['d_model']
    embed = settings['embed_dim']
    attn = dict(embed_dims=dims, num_heads=settings['nhead'])
    cfg.merge_from_dict(dict(model=dict(
        num_queries=settings['det_token_num'],
        det_channels=embed * 8,
        pos_channels=settings['pos_dim'],
        backbone=dict(
            arch=dict(
                _delete_=True,  # replaces the base's arch='t'
                embed_dims=embed,
                depths=settings['depths'],
                num_heads=settings['num_heads']),
            window_size=settings['window_size'],
            mlp_ratio=int(settings['mlp_ratio']),
            drop_path_rate=0.0,
            det_token_num=settings['det_token_num'],
            pos_dims=settings['pos_dim'],
            reduced_dims=settings['last_level_dims'],
            cross_indices=tuple(settings['cross_indices']),
            init_cfg=None),
        neck=dict(in_channels=[embed * 2, embed * 4, embed * 8,
                               settings['last_level_dims']],
                  out_channels=dims),
        decoder=dict(
            num_layers=settings['dec_layers'],
            layer_cfg=dict(
                self_attn_cfg=attn,
                cross_attn_cfg=dict(attn,
                                    num_points=settings['dec_n_points']),
                ffn_cfg=dict(embed_dims=dims, feedforward_channels=settings[
                    'dim_feedforward']))),
        bbox_head=dict(embed_dims=dims, **bbox_head))))
    return build(cfg.model.to_dict())


def preprocess_raw_images(model, images: list) -> dict:
    """RGB uint8 (3, H, W) images as the test pipeline hands them over (BGR,
    no resize) through the model's own data preprocessor."""
    from mmdet.structures import DetDataSample
    samples = [
        DetDataSample(metainfo=dict(
            img_shape=tuple(img.shape[1:]), ori_shape=tuple(img.shape[1:]),
            scale_factor=(1., 1.))) for img in images
    ]
    return model.data_preprocessor(
        dict(inputs=[img.flip(0) for img in images], data_samples=samples),
        False)


def tiny_cfg(**overrides) -> dict:
    """A small ViDT for behaviour tests (Swin-RAM embed 16, 10 [DET]
    tokens, width 64, 2 decoder layers, 5 classes)."""
    dims, embed = 64, 16
    attn = dict(embed_dims=dims, num_heads=8, dropout=0.0, batch_first=True)
    cfg = dict(
        type='ViDT',
        num_queries=10,
        with_box_refine=True,
        num_feature_levels=4,
        det_channels=embed * 8,
        pos_channels=dims,
        data_preprocessor=dict(
            type='DetDataPreprocessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_size_divisor=1),
        backbone=dict(
            type='SwinRAM',
            arch=dict(embed_dims=embed, depths=(2, 2, 2, 2),
                      num_heads=(1, 2, 4, 8)),
            window_size=7,
            drop_path_rate=0.0,
            det_token_num=10,
            pos_dims=dims,
            reduced_dims=dims),
        neck=dict(
            type='ChannelMapper',
            in_channels=[embed * 2, embed * 4, embed * 8, dims],
            kernel_size=1,
            out_channels=dims,
            act_cfg=None,
            bias=True,
            norm_cfg=dict(type='GN', num_groups=32),
            num_outs=4),
        decoder=dict(
            num_layers=2,
            return_intermediate=True,
            layer_cfg=dict(
                self_attn_cfg=attn,
                cross_attn_cfg=dict(attn, num_levels=4),
                ffn_cfg=dict(
                    embed_dims=dims, feedforward_channels=128,
                    ffn_drop=0.0)),
            post_norm_cfg=None),
        bbox_head=dict(
            type='DeformableDETRHead',
            num_classes=5,
            embed_dims=dims,
            sync_cls_avg_factor=True,
            loss_cls=dict(
                type='FocalLoss',
                use_sigmoid=True,
                gamma=2.0,
                alpha=0.25,
                loss_weight=2.0),
            loss_bbox=dict(type='L1Loss', loss_weight=5.0),
            loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
        train_cfg=dict(
            assigner=dict(
                type='HungarianAssigner',
                match_costs=[
                    dict(type='FocalLossCost', weight=2.0, eps=1e-8),
                    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                    dict(type='IoUCost', iou_mode='giou', weight=2.0)
                ])),
        test_cfg=dict(max_per_img=10))
    cfg.update(overrides)
    return cfg


def make_batch(model, sizes=((61, 75), (53, 47)), num_gts=(2, 3), seed=0):
    """Random images of the given sizes with boxes, through the model's
    data preprocessor (padded to the largest)."""
    from mmdet.structures import DetDataSample
    g = torch.Generator().manual_seed(seed)
    images, samples = [], []
    for (h, w), n in zip(sizes, num_gts):
        images.append(torch.randint(0, 256, (3, h, w), generator=g,
                                    dtype=torch.uint8))
        sample = DetDataSample(metainfo=dict(
            img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.)))
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) * 0.6
        wh = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) * 0.3 + 4
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], -1),
            labels=torch.randint(0, 5, (n, ), generator=g))
        samples.append(sample)
    batch = model.data_preprocessor(
        dict(inputs=images, data_samples=samples), True)
    return batch['inputs'], batch['data_samples']
