"""Time faster-coco-eval against pycocotools on a COCO-val-sized result set.

One synthetic set as large as COCO val2017: 5000 images of 640x480 to
427x640, 80 categories, 36,000-37,000 ground-truth objects (polygons, ~1%
crowds with RLE; COCO's object sizes: 41% small, 34% medium, 25% large) and
100 scored detections per image (a detector's top 100: jittered copies of
the objects, some with the wrong class, and background boxes), boxes and
compressed-RLE masks. Each backend scores it as
:class:`~vitdense.evaluation.metrics.ValidatedCocoMetric` does (mmdet's
parameters: ``maxDets`` 100/300/1000): ``loadRes``, ``evaluate``,
``accumulate``, ``summarize``, timed from the same Python objects (copied
outside the timer, ``loadRes`` modifies them). The twelve summary values
are checked to agree to 1e-6 and the times and their ratio are printed.

Example::

    python tools/analysis_tools/benchmark_coco_eval.py
"""
import argparse
import contextlib
import copy
import io
import sys
import time

import numpy as np
from pycocotools import mask as mask_utils

from vitdense.evaluation.metrics.coco_metric import resolve_coco_backend

SIZES = ((480, 640), (427, 640), (640, 480), (640, 427), (512, 640))
#: COCO val2017: share of small (< 32^2), medium and large objects
AREA_SHARES = (0.41, 0.34, 0.25)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=5000,
                        help='images (COCO val2017: 5000)')
    parser.add_argument('--objects', type=float, default=7.3,
                        help='mean ground-truth objects per image (COCO '
                        'val2017: 36,781 / 5000)')
    parser.add_argument('--dets', type=int, default=100,
                        help='detections per image')
    parser.add_argument('--iou-types', nargs='+', default=['bbox', 'segm'],
                        choices=['bbox', 'segm'])
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def _octagon(box):
    """The octagon inscribed in an ``xywh`` box, as a COCO polygon."""
    x, y, w, h = box
    xs = x + w * np.array([0.3, 0.7, 1, 1, 0.7, 0.3, 0, 0])
    ys = y + h * np.array([0, 0, 0.3, 0.7, 1, 1, 0.7, 0.3])
    return [np.stack([xs, ys], 1).ravel().tolist()]


def _random_boxes(rng, count, height, width):
    """``count`` ``xywh`` boxes inside the image with COCO's area mix."""
    kind = rng.choice(3, count, p=AREA_SHARES)
    low = np.array([6.0, 32.0, 96.0])[kind]
    high = np.minimum(np.array([32.0, 96.0, 400.0])[kind], min(height, width))
    side = rng.uniform(low, high)
    aspect = np.exp(rng.uniform(-0.7, 0.7, count))
    w = np.clip(side * aspect, 2, width - 1)
    h = np.clip(side / aspect, 2, height - 1)
    x = rng.uniform(0, width - w)
    y = rng.uniform(0, height - h)
    return np.stack([x, y, w, h], 1)


def make_set(args):
    """Ground truth (a COCO dict) and detections (a list of result dicts
    with ``bbox`` and ``segmentation`` RLE)."""
    rng = np.random.default_rng(args.seed)
    images, annotations, detections = [], [], []
    for image_id in range(1, args.images + 1):
        height, width = SIZES[image_id % len(SIZES)]
        images.append(dict(id=image_id, width=width, height=height,
                           file_name=f'{image_id:012d}.jpg'))
        count = int(rng.poisson(args.objects))
        gt_boxes = _random_boxes(rng, count, height, width)
        gt_cats = rng.integers(1, 81, count)
        for box, cat in zip(gt_boxes, gt_cats):
            crowd = rng.random() < 0.01
            polygon = _octagon(box)
            if crowd:
                segmentation = mask_utils.frPyObjects(polygon, height,
                                                      width)[0]
                segmentation['counts'] = segmentation['counts'].decode()
                area = float(mask_utils.area(segmentation))
            else:
                segmentation = polygon
                area = float(box[2] * box[3] * 0.82)  # the octagon's area
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id,
                category_id=int(cat), bbox=box.tolist(), area=area,
                iscrowd=int(crowd), segmentation=segmentation))
        # a detector's top 100: up to 3 jittered copies of each object
        copies = np.repeat(np.arange(count), rng.integers(1, 4, count))
        copies = copies[:args.dets]
        boxes = gt_boxes[copies] if count else np.zeros((0, 4))
        boxes = boxes + rng.normal(0, 0.08, boxes.shape) * np.tile(
            boxes[:, 2:], 2)
        cats = gt_cats[copies].copy()
        wrong = rng.random(len(cats)) < 0.1
        cats[wrong] = rng.integers(1, 81, wrong.sum())
        extra = args.dets - len(copies)
        boxes = np.concatenate(
            [boxes, _random_boxes(rng, extra, height, width)])
        boxes[:, :2] = np.clip(boxes[:, :2], 0, None)
        boxes[:, 2:] = np.clip(boxes[:, 2:], 1, None)
        cats = np.concatenate([cats, rng.integers(1, 81, extra)])
        scores = np.concatenate([rng.uniform(0.3, 1, len(copies)),
                                 rng.uniform(0, 0.5, extra)])
        rles = mask_utils.frPyObjects([_octagon(b)[0] for b in boxes],
                                      height, width)
        for box, cat, score, rle in zip(boxes, cats, scores, rles):
            rle['counts'] = rle['counts'].decode()
            detections.append(dict(image_id=image_id, category_id=int(cat),
                                   bbox=[round(float(v), 2) for v in box],
                                   score=round(float(score), 4),
                                   segmentation=rle))
    categories = [dict(id=i, name=f'class{i}') for i in range(1, 81)]
    return dict(images=images, annotations=annotations,
                categories=categories), detections


def evaluate(backend, gt_dict, results, iou_type):
    """Seconds to score ``results`` as ValidatedCocoMetric does, and the
    summary values."""
    if backend == 'pycocotools':
        from mmdet.datasets.api_wrappers import COCO, COCOeval
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO()
            gt.dataset = gt_dict
            gt.createIndex()
    else:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
        gt = COCO(gt_dict)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(gt, gt.loadRes(results), iou_type)
        coco_eval.params.maxDets = [100, 300, 1000]
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return time.perf_counter() - start, np.asarray(coco_eval.stats[:12])


def main():
    args = parse_args()
    resolve_coco_backend('faster_coco_eval')  # a clear error without it
    start = time.perf_counter()
    gt_dict, detections = make_set(args)
    print(f'{len(gt_dict["images"])} images, {len(gt_dict["annotations"])} '
          f'ground-truth objects, {len(detections)} detections (made in '
          f'{time.perf_counter() - start:.1f} s)')
    print('| IoU type | pycocotools (s) | faster-coco-eval (s) | ratio | '
          'max abs diff of the 12 summary values |')
    print('|---|---:|---:|---:|---:|')
    failed = False
    for iou_type in args.iou_types:
        results = []
        for det in detections:
            det = dict(det)
            # mmdet scores masks without the box (mask areas)
            det.pop('bbox' if iou_type == 'segm' else 'segmentation')
            results.append(det)
        times, stats = {}, {}
        for backend in ('pycocotools', 'faster_coco_eval'):
            times[backend], stats[backend] = evaluate(
                backend, copy.deepcopy(gt_dict), copy.deepcopy(results),
                iou_type)
        diff = float(np.abs(stats['pycocotools'] -
                            stats['faster_coco_eval']).max())
        failed |= diff > 1e-6
        print(f'| {iou_type} | {times["pycocotools"]:.2f} | '
              f'{times["faster_coco_eval"]:.2f} | '
              f'{times["pycocotools"] / times["faster_coco_eval"]:.2f}x | '
              f'{diff:.1e} |', flush=True)
        print(f'  {iou_type} AP, AP50, AP75, APs, APm, APl: ' +
              ' '.join(f'{v:.4f}' for v in stats['pycocotools'][:6]))
    if failed:
        sys.exit('faster-coco-eval and pycocotools disagree (> 1e-6)')


if __name__ == '__main__':
    main()
