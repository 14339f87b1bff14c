"""Relation-DETR parity with the official model's in-model evaluation resize
(``min_size=800, max_size=1333``), through the COCO config's own test
pipeline and data preprocessor.

Fixture: ``tests/data/relation_detr/relation_detr_tiny_official_resize.pth``
from xiuqhou/Relation-DETR@b485955, the weights of
``relation_detr_tiny_official.pth`` (see the README there).
"""
import os.path as osp

import mmcv
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from test_relation_detr import (DATA, _load, assert_matches_official,
                                coco_config_model, official_checkpoint)


def test_relation_detr_matches_official_model_with_its_resize(
        repo_root, tmp_path):
    """Raw images (one upscaled to 800x1081, one downscaled to 53x1332)
    written to disk, read by the shipped COCO config's test pipeline and
    batched by its data preprocessor, give the official outputs and
    detections (in original-image pixels)."""
    import vitdense.datasets  # noqa: F401  (registers the transforms)
    from mmcv.transforms import Compose
    from mmengine.config import Config

    from vitdense.converters.relation_detr import \
        convert_relation_detr_official
    weights = _load('relation_detr_tiny_official.pth')
    data = torch.load(
        osp.join(DATA, 'relation_detr_tiny_official_resize.pth'),
        weights_only=False)
    model = coco_config_model(repo_root, weights['settings']).eval()
    model.load_state_dict(
        convert_relation_detr_official(official_checkpoint(weights)),
        strict=True)

    init_default_scope('mmdet')
    cfg = Config.fromfile(
        osp.join(repo_root, 'configs', 'relation_detr',
                 'relation-detr_r50_8xb2-12e_coco.py'))
    pipeline = Compose([
        t for t in cfg.test_dataloader.dataset.pipeline
        if t['type'] != 'LoadAnnotations'
    ])
    samples = []
    for i, image in enumerate(data['images']):
        path = str(tmp_path / f'{i}.png')
        mmcv.imwrite(image.flip(0).permute(1, 2, 0).numpy(), path)  # BGR
        samples.append(pipeline(dict(img_path=path, img_id=i)))
    batch = model.data_preprocessor(pseudo_collate(samples), False)
    # the official batch: both images padded together to 800x1344
    assert tuple(batch['inputs'].shape) == (2, 3, 800, 1344)
    assert [s.img_shape for s in batch['data_samples']
            ] == data['resized_shapes']

    outs = []  # every decoder layer's (logits, boxes), seen in predict
    model.bbox_head.register_forward_hook(lambda m, a, out: outs.append(out))
    with torch.no_grad():
        results = model.predict(batch['inputs'], batch['data_samples'])
    (cls_scores, bbox_preds), = outs
    assert_matches_official(cls_scores, bbox_preds, results, data)
