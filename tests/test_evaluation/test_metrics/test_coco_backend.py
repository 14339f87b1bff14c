"""ValidatedCocoMetric's COCO backends: faster-coco-eval gives pycocotools'
numbers (every summary value to 1e-6, bbox and segm) on the embedded COCO
shapes with perturbed predictions; the backend is chosen by config."""
import json
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vitdense.datasets.synthetic import make_coco_shapes
from vitdense.evaluation.metrics import ValidatedCocoMetric
from vitdense.evaluation.metrics.coco_metric import resolve_coco_backend
from vitdense.registry import METRICS

faster_coco_eval = pytest.importorskip('faster_coco_eval')

CLASSES = ('circle', 'square', 'triangle')


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    """70 validation images, 40 of 128x128 and 30 of 320x352 (small,
    medium and large objects, crowds), and perturbed predictions as mmdet
    data samples: 85% of the objects found with jittered boxes and shifted
    masks, a tenth of them with the wrong class, duplicates and 3 false
    positives per image."""
    merged = None
    for index, (count, size) in enumerate(((40, (128, 128)),
                                           (30, (320, 352)))):
        root = make_coco_shapes(
            str(tmp_path_factory.mktemp(f'coco_backend{index}')),
            num_train=1, num_val=count, image_size=size, seed=5 + index)
        with open(osp.join(root, 'annotations', 'instances_val.json')) as f:
            part = json.load(f)
        if merged is None:
            merged = part
            continue
        for image in part['images']:
            image['id'] += 1000
        for ann in part['annotations']:
            ann['id'] += 100000
            ann['image_id'] += 1000
        merged['images'] += part['images']
        merged['annotations'] += part['annotations']
    ann_file = str(tmp_path_factory.mktemp('coco_backend') / 'val.json')
    with open(ann_file, 'w') as f:
        json.dump(merged, f)
    coco = COCO(ann_file)
    cat_ids = coco.getCatIds(catNms=list(CLASSES))
    rng = np.random.default_rng(0)
    samples = []
    for img_id in coco.getImgIds():
        info = coco.imgs[img_id]
        height, width = info['height'], info['width']
        boxes, labels, masks = [], [], []
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id)):
            if rng.random() < 0.15:
                continue
            x, y, w, h = ann['bbox']
            for _ in range(1 + int(rng.random() < 0.2)):
                dx, dy = rng.normal(0, 0.06, 2) * (w, h)
                dw, dh = rng.normal(0, 0.06, 2) * (w, h)
                boxes.append([x + dx, y + dy, x + dx + w + dw,
                              y + dy + h + dh])
                label = cat_ids.index(ann['category_id'])
                if rng.random() < 0.1:
                    label = int(rng.integers(len(CLASSES)))
                labels.append(label)
                masks.append(np.roll(coco.annToMask(ann),
                                     (round(dy), round(dx)), axis=(0, 1)))
        for _ in range(3):
            x0, y0 = rng.uniform(0, (width - 8, height - 8))
            x1, y1 = rng.uniform((x0 + 4, y0 + 4), (width, height))
            boxes.append([x0, y0, x1, y1])
            labels.append(int(rng.integers(len(CLASSES))))
            mask = np.zeros((height, width), np.uint8)
            mask[int(y0):int(y1), int(x0):int(x1)] = 1
            masks.append(mask)
        samples.append({
            'img_id': img_id,
            'ori_shape': (height, width),
            'pred_instances': {
                'bboxes': torch.tensor(boxes, dtype=torch.float32),
                'scores': torch.from_numpy(rng.uniform(0.05, 1, len(boxes))),
                'labels': torch.tensor(labels),
                'masks': torch.from_numpy(np.stack(masks).astype(bool)),
            }
        })
    return ann_file, samples


def _evaluate(ann_file, samples, backend, outfile_prefix=None, **kwargs):
    metric = METRICS.build(dict(type='vitdense.ValidatedCocoMetric',
                                ann_file=ann_file, metric=['bbox', 'segm'],
                                backend=backend,
                                outfile_prefix=outfile_prefix, **kwargs))
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, samples)
    return metric, metric.evaluate(len(samples))


def test_auto_backend_is_faster_coco_eval_when_installed(shapes):
    ann_file, _ = shapes
    assert resolve_coco_backend('auto') == 'faster_coco_eval'
    metric = ValidatedCocoMetric(ann_file=ann_file)
    assert metric.backend == 'faster_coco_eval'
    assert isinstance(metric._coco_api, faster_coco_eval.COCO)
    assert ValidatedCocoMetric(ann_file=ann_file,
                               backend='pycocotools').backend == 'pycocotools'


@pytest.mark.parametrize('with_ann_file', [True, False])
def test_metric_keys_equal_between_backends(shapes, with_ann_file, capsys):
    ann_file, samples = shapes
    kwargs = dict(classwise=True)
    if not with_ann_file:
        # ground truth from the data samples (mmdet converts it to json)
        coco = COCO(ann_file)
        samples = [
            dict(sample, instances=[
                dict(bbox=[a['bbox'][0], a['bbox'][1],
                           a['bbox'][0] + a['bbox'][2],
                           a['bbox'][1] + a['bbox'][3]],
                     bbox_label=[c['name'] for c in coco.dataset[
                         'categories']].index(
                             coco.cats[a['category_id']]['name']),
                     ignore_flag=a['iscrowd'],
                     mask=a['segmentation'])
                for a in coco.imgToAnns[sample['img_id']]])
            for sample in samples
        ]
        ann_file = None
        kwargs = {}
    _, slow = _evaluate(ann_file, samples, 'pycocotools', **kwargs)
    slow_log = capsys.readouterr().out
    _, fast = _evaluate(ann_file, samples, 'faster_coco_eval', **kwargs)
    fast_log = capsys.readouterr().out
    assert len(slow) >= 12
    assert set(fast) == set(slow)
    for key in slow:
        assert fast[key] == pytest.approx(slow[key], abs=1e-6), key
    assert 0.1 < slow['coco/bbox_mAP'] < 0.9
    assert 0.1 < slow['coco/segm_mAP'] < 0.9
    # the summary table reaches stdout as with pycocotools
    line = ' Average Precision  (AP) @[ IoU=0.50      | area=   all |'
    assert slow_log.count(line) == fast_log.count(line) == 2


@pytest.mark.parametrize('iou_type', ['bbox', 'segm'])
def test_every_summary_value_equals_pycocotools(shapes, iou_type, tmp_path):
    """The result files mmdet writes, scored by pycocotools' COCOeval and by
    the faster backend with mmdet's parameters: every summary value,
    precision and recall to 1e-6."""
    ann_file, samples = shapes
    prefix = str(tmp_path / 'results')
    _evaluate(ann_file, samples, 'pycocotools', outfile_prefix=prefix)
    with open(f'{prefix}.{iou_type}.json') as f:
        results = json.load(f)
    if iou_type == 'segm':
        for result in results:  # as mmdet: mask areas, not box areas
            result.pop('bbox')
    evals = []
    for coco_cls, eval_cls in ((COCO, COCOeval),
                               (faster_coco_eval.COCO,
                                faster_coco_eval.COCOeval_faster)):
        gt = coco_cls(ann_file)
        coco_eval = eval_cls(gt, gt.loadRes(json.loads(json.dumps(results))),
                             iou_type)
        coco_eval.params.maxDets = [100, 300, 1000]
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
        evals.append(coco_eval)
    slow, fast = evals
    assert len(slow.stats) == 12
    np.testing.assert_allclose(fast.stats[:12], slow.stats, rtol=0,
                               atol=1e-6)
    assert (slow.stats[3:6] > 0).all()  # small, medium and large objects
    for key in ('precision', 'recall', 'scores'):
        np.testing.assert_allclose(fast.eval[key], slow.eval[key], rtol=0,
                                   atol=1e-6, err_msg=key)


def test_rle_masks_of_perturbed_predictions_are_valid(shapes):
    _, samples = shapes
    masks = samples[0]['pred_instances']['masks'].numpy()
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0)
                                               .astype(np.uint8)))
    assert (mask_utils.area(rles) == masks.sum((1, 2))).all()


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="'cocoapi' is not one of"):
        ValidatedCocoMetric(backend='cocoapi')


def test_faster_backend_without_the_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, 'faster_coco_eval', None)
    assert resolve_coco_backend('auto') == 'pycocotools'
    with pytest.raises(ImportError, match='pip install .faster-coco-eval'):
        ValidatedCocoMetric(backend='faster_coco_eval')
