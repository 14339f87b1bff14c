"""mmdet's COCO panoptic metric without panopticapi."""
import os.path as osp
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import mmcv
import numpy as np
from mmdet.datasets.api_wrappers import COCOPanoptic
from mmdet.evaluation import CocoPanopticMetric
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.evaluation.metrics.coco_panoptic_metric import (
    parse_pq_results, print_panoptic_table)
from mmengine.evaluator import BaseMetric
from mmengine.fileio import dump, get_local_path, load
from mmengine.logging import MMLogger

from vitdense.evaluation.functional.panoptic import (VOID, PQStat, id2rgb,
                                                     pq_compute_files,
                                                     pq_compute_single_image,
                                                     pq_results,
                                                     read_panoptic_png)
from vitdense.registry import METRICS

__all__ = ['VitdenseCocoPanopticMetric']


@METRICS.register_module()
class VitdenseCocoPanopticMetric(CocoPanopticMetric):
    """:class:`mmdet.evaluation.CocoPanopticMetric` computed by vitdense.

    mmdet's metric raises ``RuntimeError`` when it is built without
    panopticapi (not installable here; see
    :mod:`vitdense.evaluation.functional.panoptic`), and takes ``rgb2id``,
    ``id2rgb``, ``VOID``, ``PQStat`` and the matching from it. This subclass
    keeps mmdet's arguments, data flow, files and keys (``coco_panoptic/PQ``,
    ``SQ``, ``RQ``, ``PQ_th``, ..., ``RQ_st`` in percent) and computes with
    :func:`~vitdense.evaluation.functional.panoptic.pq_compute_single_image`,
    which gives panopticapi's numbers.

    Modes, as mmdet: without ``outfile_prefix`` each batch is scored in
    :meth:`process` from the predicted ids in memory (mmdet writes them to a
    temporary PNG and reads them back); with it, the predicted PNGs and
    ``{outfile_prefix}.panoptic.json`` are written as mmdet writes them and
    scored at the end (``nproc`` processes), or only written when
    ``format_only``. The ground truth comes from ``ann_file`` and
    ``seg_prefix``, or, without ``ann_file``, from the data samples'
    ``segments_info`` and ``seg_map_path`` (else ``seg_prefix``).

    Differences from mmdet: a group without categories to average (e.g.
    stuff of a things-only dataset) is NaN instead of ZeroDivisionError;
    with ``classwise`` the per-class numbers are also returned, as
    ``{class}_PQ``, ``{class}_SQ``, ``{class}_RQ``; the ground truth of
    ``ann_file`` is its ``annotations`` as panopticapi reads them (PNG
    ``file_name``; images without segments are scored, mmdet skipped them
    when writing files).

    Args: as :class:`~mmdet.evaluation.CocoPanopticMetric`.
    """

    def __init__(self,
                 ann_file: Optional[str] = None,
                 seg_prefix: Optional[str] = None,
                 classwise: bool = False,
                 format_only: bool = False,
                 outfile_prefix: Optional[str] = None,
                 nproc: int = 32,
                 file_client_args: dict = None,
                 backend_args: dict = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        # mmdet's __init__ without its panopticapi check
        self.tmp_dir = None  # read by mmdet's __del__, also after a raise
        BaseMetric.__init__(self, collect_device=collect_device,
                            prefix=prefix)
        if file_client_args is not None:
            raise RuntimeError('The `file_client_args` is deprecated, '
                               'please use `backend_args` instead.')
        if format_only and outfile_prefix is None:
            raise ValueError('outfile_prefix must be given when format_only '
                             'is True (a temporary folder is deleted).')
        self.classwise = classwise
        self.format_only = format_only
        self.outfile_prefix = outfile_prefix
        if outfile_prefix is None:
            self.tmp_dir = tempfile.TemporaryDirectory()
            self.outfile_prefix = osp.join(self.tmp_dir.name, 'results')
        self.seg_out_dir = f'{self.outfile_prefix}.panoptic'
        self.nproc = nproc
        self.seg_prefix = seg_prefix
        self.cat_ids = None
        self.cat2label = None
        self.backend_args = backend_args
        self._coco_api = None
        self.categories = None
        if ann_file:
            with get_local_path(ann_file,
                                backend_args=backend_args) as local_path:
                self._coco_api = COCOPanoptic(local_path)
            self.categories = self._coco_api.cats

    def _label_categories(self) -> Dict[int, dict]:
        """Categories keyed by contiguous label (ground truth without
        ``ann_file``)."""
        things = self.dataset_meta['thing_classes']
        return {label: {'id': label, 'name': name,
                        'isthing': int(name in things)}
                for label, name in enumerate(self.dataset_meta['classes'])}

    def _gt_segments(self, segments_info: List[dict], pan_ids: np.ndarray,
                     categories: Dict[int, dict]) -> List[dict]:
        """mmdet's data-sample ``segments_info`` as COCO segments (a thing
        that is not ``is_thing`` is a crowd; areas counted in the PNG)."""
        segments = []
        for segment in segments_info:
            label = segment['category']
            isthing = categories[label]['isthing']
            segments.append({
                'id': segment['id'], 'category_id': label,
                'isthing': isthing,
                'iscrowd': int(bool(isthing) and not segment['is_thing']),
                'area': int((pan_ids == segment['id']).sum())})
        return segments

    def gt_to_coco_json(self, gt_dicts: Sequence[dict],
                        outfile_prefix: str) -> Tuple[str, str]:
        """mmdet's conversion of the data samples' ground truth to a COCO
        panoptic json ``{outfile_prefix}.gt.json``; returns it and the PNG
        folder."""
        if not gt_dicts:
            raise ValueError('no ground truth to convert: gt_dicts is empty')
        gt_folder = osp.dirname(gt_dicts[0]['seg_map_path'])
        categories = self._label_categories()
        images, annotations = [], []
        for gt in gt_dicts:
            file_name = osp.basename(gt['seg_map_path'])
            images.append({'id': gt['image_id'], 'width': gt['width'],
                           'height': gt['height'], 'file_name': file_name})
            pan_ids = read_panoptic_png(gt['seg_map_path'], self.backend_args)
            annotations.append({
                'image_id': gt['image_id'], 'file_name': file_name,
                'segments_info': self._gt_segments(gt['segments_info'],
                                                   pan_ids, categories)})
        path = f'{outfile_prefix}.gt.json'
        dump({'info': {'description': 'COCO panoptic ground truth converted '
                       'by vitdense VitdenseCocoPanopticMetric'},
              'images': images, 'annotations': annotations,
              'categories': list(categories.values()), 'licenses': None},
             path)
        return path, gt_folder

    def _prediction_ids(self, pred: dict, label2cat: Optional[dict] = None
                        ) -> Tuple[np.ndarray, List[dict]]:
        """Panoptic ids ``(H, W)`` (void 0) and ``segments_info`` of one
        prediction, as mmdet's ``_parse_predictions``: the head's ids
        ``label + instance * INSTANCE_OFFSET`` are kept, labels
        ``len(classes)`` and ``ignore_index`` become void."""
        pan = pred['pred_panoptic_seg']['sem_seg'].cpu().numpy()[0]
        num_classes = len(self.dataset_meta['classes'])
        ignore_index = pred['pred_panoptic_seg'].get('ignore_index',
                                                     num_classes)
        labels, areas = np.unique(pan, return_counts=True)
        segments = []
        for pan_label, area in zip(labels.tolist(), areas.tolist()):
            label = pan_label % INSTANCE_OFFSET
            if label == num_classes or label == ignore_index:
                continue
            segments.append({
                'id': int(pan_label),
                'category_id': label2cat[label] if label2cat else label,
                'area': int(area)})
        label = pan % INSTANCE_OFFSET
        pan = np.where((label == num_classes) | (label == ignore_index),
                       VOID, pan)
        return pan, segments

    def _parse_predictions(self,
                           pred: dict,
                           img_id: int,
                           segm_file: str,
                           label2cat: Optional[dict] = None) -> dict:
        """Write the predicted PNG to ``seg_out_dir`` and return its COCO
        annotation, as mmdet does."""
        pan, segments = self._prediction_ids(pred, label2cat)
        mmcv.imwrite(id2rgb(pan)[..., ::-1],
                     osp.join(self.seg_out_dir, segm_file))
        return {'image_id': img_id, 'segments_info': segments,
                'file_name': segm_file}

    def _compute_batch_pq_stats(self, data_samples: Sequence[dict]) -> None:
        """Score each data sample now; :class:`PQStat` into
        ``self.results``."""
        if self._coco_api is None:
            categories, label2cat = self._label_categories(), None
        else:
            categories = self.categories
            cat_ids = self._coco_api.get_cat_ids(
                cat_names=self.dataset_meta['classes'])
            label2cat = dict(enumerate(cat_ids))
        for sample in data_samples:
            img_id = sample['img_id']
            segm_file = osp.basename(sample['img_path']).replace(
                '.jpg', '.png')
            pred_ids, pred_segments = self._prediction_ids(sample, label2cat)
            if self._coco_api is None:
                path = sample.get('seg_map_path') or self._gt_path(segm_file)
                gt_ids = read_panoptic_png(path, self.backend_args)
                gt_segments = self._gt_segments(sample['segments_info'],
                                                gt_ids, categories)
            else:
                gt_ann = self._gt_annotations().get(img_id)
                if gt_ann is None:
                    raise ValueError(
                        f'image id {img_id} ({sample["img_path"]}) has no '
                        'annotation in the ann_file')
                path = self._gt_path(gt_ann['file_name'])
                gt_ids = read_panoptic_png(path, self.backend_args)
                gt_segments = gt_ann['segments_info']
            self.results.append(pq_compute_single_image(
                {'image_id': img_id, 'file_name': path,
                 'segments_info': gt_segments},
                {'segments_info': pred_segments}, gt_ids, pred_ids,
                categories))

    def _gt_annotations(self) -> Dict[int, dict]:
        """The ground-truth json's annotations by image id, those without
        segments included (mmdet's ``img_ann_map`` lacks them, so their
        false positives went uncounted; panopticapi counts them)."""
        return {a['image_id']: a
                for a in self._coco_api.dataset.get('annotations', [])}

    def _gt_path(self, file_name: str) -> str:
        if self.seg_prefix is None:
            raise ValueError(
                f'{type(self).__name__}: seg_prefix (the ground-truth PNG '
                'folder) is needed unless the data samples carry '
                'seg_map_path and segments_info and no ann_file is given')
        return osp.join(self.seg_prefix, file_name)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        logger = MMLogger.get_current_instance()
        if self.tmp_dir is None:
            gts, preds = zip(*results)
            if self._coco_api is None:
                logger.info('Converting ground truth to coco format...')
                gt_json, gt_folder = self.gt_to_coco_json(
                    gts, self.outfile_prefix)
                self._coco_api = COCOPanoptic(gt_json)
            else:
                gt_folder = self.seg_prefix
            self.cat_ids = self._coco_api.get_cat_ids(
                cat_names=self.dataset_meta['classes'])
            self.cat2label = {c: i for i, c in enumerate(self.cat_ids)}
            self.img_ids = self._coco_api.get_img_ids()
            self.categories = self._coco_api.cats
            json_filename, pred_folder = self.result2json(
                results=preds, outfile_prefix=self.outfile_prefix)
            if self.format_only:
                logger.info('results are saved in '
                            f'{osp.dirname(self.outfile_prefix)}')
                return dict()
            predictions = {a['image_id']: a
                           for a in load(json_filename)['annotations']}
            matched = []
            for img_id, gt_ann in self._gt_annotations().items():
                if img_id not in predictions:
                    raise ValueError(
                        f'no prediction for the image with id {img_id}')
                matched.append((gt_ann, predictions[img_id]))
            pq_stat = pq_compute_files(matched, gt_folder, pred_folder,
                                       self.categories, self.backend_args,
                                       self.nproc)
        else:
            if self._coco_api is None:
                self.categories = self._label_categories()
            pq_stat = PQStat()
            for stat in results:
                pq_stat += stat

        summary = pq_results(pq_stat, self.categories)
        classwise = None
        if self.classwise:
            classwise = {self.categories[cat_id]['name']: values
                         for cat_id, values in summary['per_class'].items()}
        print_panoptic_table(summary, classwise, logger=logger)
        metrics = parse_pq_results(summary)
        for name, values in (classwise or {}).items():
            for key in ('pq', 'sq', 'rq'):
                metrics[f'{name}_{key.upper()}'] = 100 * values[key]
        return metrics
