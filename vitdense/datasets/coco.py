"""mmdet's COCO loaders with input validation that fails loudly.

mmdet's :class:`~mmdet.datasets.CocoDataset` silently drops boxes with zero
or negative size, NaN coordinates or outside the image, ignores annotations
of unknown images or categories, and accepts ``classes`` that the json does
not contain, all of which give a wrong metric without a word. These
subclasses keep mmdet's parsing and add checks with errors that name the file
and the annotation.
"""
import json
import math
import os.path as osp
import warnings
from typing import Dict, List, Union

from mmdet.datasets import CocoDataset, CocoPanopticDataset
from mmengine.fileio import get_local_path
from mmengine.logging import print_log
from PIL import Image

from vitdense.registry import DATASETS

__all__ = ['ValidatedCocoDataset', 'ValidatedCocoPanopticDataset',
           'check_dataset_files', 'check_coco_annotations']

#: A box may exceed the image by this many pixels (float rounding in COCO).
BORDER_TOLERANCE = 1.0
#: How many annotation ids an error or warning lists.
SHOWN_IDS = 5
#: EXIF orientations that swap width and height when the image is decoded.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _annotation_problem(ann: dict, image_ids: set,
                        category_ids: set) -> Union[str, None]:
    """What makes ``ann`` unreadable, or None."""
    if 'bbox' not in ann:
        return 'has no "bbox" key'
    bbox = ann['bbox']
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or \
            not all(_is_number(v) for v in bbox):
        return f'bbox {bbox!r} is not 4 numbers [x, y, width, height]'
    if not all(math.isfinite(v) for v in bbox):
        return f'bbox {bbox!r} has non-finite coordinates'
    area = ann.get('area')
    if not _is_number(area) or not math.isfinite(area):
        return f'area {area!r} is not a finite number'
    if ann.get('category_id') not in category_ids:
        return (f'category_id {ann.get("category_id")!r} is not one of the '
                f'file\'s categories {sorted(category_ids)}')
    if ann.get('image_id') not in image_ids:
        return (f'image_id {ann.get("image_id")!r} is not one of the '
                'file\'s images')
    return None


def _ids(anns: List[dict]) -> str:
    shown = ', '.join(str(a.get('id')) for a in anns[:SHOWN_IDS])
    return shown + (', ...' if len(anns) > SHOWN_IDS else '')


def check_coco_annotations(ann_file: str, coco_dict: Dict) -> None:
    """Raise ``ValueError`` naming ``ann_file`` and the annotation id if an
    annotation has no ``bbox``, a bbox that is not 4 finite numbers, an area
    that is not a finite number, a ``category_id`` not in ``categories`` or an
    ``image_id`` not in ``images``.

    pycocotools and mmdet accept all of these without a word (mmdet's loader
    drops a NaN box, ``COCOeval`` computes NaN IoUs with it); issue 12
    measured AP 0.875 for a perfect detector on a file with a NaN box.
    """
    image_ids = {img.get('id') for img in coco_dict.get('images', [])}
    category_ids = {cat.get('id') for cat in coco_dict.get('categories', [])}
    bad = []
    for ann in coco_dict.get('annotations', []):
        problem = _annotation_problem(ann, image_ids, category_ids)
        if problem is not None:
            bad.append((ann, problem))
    if bad:
        ann, problem = bad[0]
        more = ''
        if len(bad) > 1:
            more = (f' {len(bad) - 1} more annotations have problems (ids '
                    f'{_ids([a for a, _ in bad[1:]])}).')
        raise ValueError(
            f'{ann_file}: annotation id {ann.get("id")} of image id '
            f'{ann.get("image_id")}: {problem}.{more}')


def check_dataset_files(dataset_name: str, data_root: str, paths: dict,
                        generator_kind: str) -> None:
    """Raise ``FileNotFoundError`` with a remedy if a needed path is absent."""
    hint = ('Generate the embedded data with `python tools/dataset_converters/'
            f'make_synthetic.py {generator_kind} {data_root or "<data_root>"}` '
            '(or `make data`), or point `data_root` at your copy of the '
            'dataset.')
    if data_root and not osp.isdir(data_root):
        raise FileNotFoundError(
            f'{dataset_name}: data_root {data_root!r} does not exist. {hint}')
    for what, path in paths.items():
        if path and not osp.exists(path):
            raise FileNotFoundError(
                f'{dataset_name}: {what} {path!r} does not exist. {hint}')


class _CocoValidation:
    """Shared checks for the COCO-style datasets below."""

    generator_kind = 'coco'

    def _check_paths(self) -> None:
        image_dir = self.data_prefix.get('img', '')
        check_dataset_files(type(self).__name__, self.data_root,
                            {'ann_file': self.ann_file,
                             'image folder': image_dir}, self.generator_kind)

    def _load_with_context(self, loader) -> List[dict]:
        try:
            return loader()
        except json.JSONDecodeError as error:
            raise ValueError(
                f'{self.ann_file}: malformed annotation JSON at line '
                f'{error.lineno}, column {error.colno}: {error.msg}') from error
        except (KeyError, AssertionError, TypeError) as error:
            kind = type(error).__name__
            raise ValueError(
                f'{self.ann_file}: not a COCO annotation file ({kind}: '
                f'{error}); it needs "images", "annotations" and '
                '"categories" lists') from error

    def _check_classes_once(self) -> None:
        if getattr(self, '_classes_checked', False):
            return
        self._classes_checked = True
        known = {c['name'] for c in self.coco.dataset['categories']}
        missing = [c for c in self.metainfo['classes'] if c not in known]
        if missing:
            raise ValueError(
                f'{self.ann_file}: classes {missing} from the config are not '
                f'categories of this file (it has {sorted(known)}).')

    def _check_file_once(self) -> None:
        if not getattr(self, '_file_checked', False):
            self._file_checked = True
            check_coco_annotations(self.ann_file, self.coco.dataset)

    def _check_box(self, ann: dict, img_info: dict) -> Union[str, None]:
        x, y, w, h = ann['bbox']
        width, height = img_info['width'], img_info['height']
        if w <= 0 or h <= 0:
            return f'has zero or negative size (w={w}, h={h})'
        tol = BORDER_TOLERANCE
        if x < -tol or y < -tol or x + w > width + tol or \
                y + h > height + tol:
            return f'lies outside the {width}x{height} image'
        return None


@DATASETS.register_module()
class ValidatedCocoDataset(_CocoValidation, CocoDataset):
    """:class:`mmdet.datasets.CocoDataset` that rejects bad input.

    Errors, naming the file and the annotation id: a missing ``bbox``, a bbox
    that is not 4 finite numbers (strings, NaN, 3 numbers), a non-finite
    ``area``, a ``category_id`` or ``image_id`` that the file does not define
    (:func:`check_coco_annotations`), a box with zero or negative size or
    outside its image, and an image whose file is not the JSON's
    ``width`` x ``height`` (read from the image header only).

    Warnings with the count and the first ids: boxes under 1 px wide or high
    and ``area <= 0``. mmdet's loader drops them (``w < 1 or h < 1`` and
    ``area <= 0`` in :meth:`CocoDataset.parse_data_info`), as the COCO
    training recipes always have; real COCO contains such annotations.

    Args:
        invalid_boxes (str): ``'error'`` (default) raises on a box with zero
            or negative size or outside its image; ``'skip'`` drops such
            boxes (mmdet's behaviour) and warns with their count.
        check_image_size (bool): read each image's header and compare its
            size with the JSON's (an EXIF rotation that swaps the sides is
            accepted). About 0.15 ms per image (~18 s for COCO train2017).
            Defaults to True.
        **kwargs: as :class:`~mmdet.datasets.CocoDataset`.
    """

    def __init__(self, *args, invalid_boxes: str = 'error',
                 check_image_size: bool = True, **kwargs):
        if invalid_boxes not in ('error', 'skip'):
            raise ValueError("invalid_boxes must be 'error' or 'skip', got "
                             f'{invalid_boxes!r}')
        self.invalid_boxes = invalid_boxes
        self.check_image_size = check_image_size
        self._num_skipped = 0
        self._tiny, self._no_area = [], []
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        self._check_paths()
        data_list = self._load_with_context(super().load_data_list)
        if self.check_image_size:
            for data_info in data_list:
                self._check_image_size(data_info)
        empty = sum(1 for d in data_list if not d['instances'])
        if empty:
            print_log(f'{self.ann_file}: {empty} of {len(data_list)} images '
                      'have no annotations', logger='current')
        if self._num_skipped:
            print_log(f'{self.ann_file}: skipped {self._num_skipped} invalid '
                      'boxes (invalid_boxes="skip")', logger='current',
                      level=30)
        for anns, what in ((self._tiny, 'boxes under 1 px wide or high'),
                           (self._no_area, 'annotations with area <= 0')):
            if anns:
                warnings.warn(f'{self.ann_file}: dropped {len(anns)} {what} '
                              f'as mmdet does (annotation ids {_ids(anns)})')
        return data_list

    def _check_image_size(self, data_info: dict) -> None:
        path = data_info['img_path']
        where = f'{self.ann_file}: image id {data_info["img_id"]} ({path})'
        expected = (data_info['width'], data_info['height'])
        try:
            with get_local_path(path, self.backend_args) as local, \
                    Image.open(local) as image:
                size = image.size
                if size != expected and image.getexif().get(0x0112) in \
                        _TRANSPOSING_ORIENTATIONS:
                    size = size[::-1]
        except FileNotFoundError as error:
            raise FileNotFoundError(f'{where}: image file not found') \
                from error
        except OSError as error:
            raise ValueError(f'{where}: cannot read the image ({error})') \
                from error
        if size != expected:
            raise ValueError(
                f'{where}: the image is {size[0]}x{size[1]} (width x height) '
                f'but the file says {expected[0]}x{expected[1]}.')

    def parse_data_info(self, raw_data_info: dict) -> Union[dict, List[dict]]:
        self._check_classes_once()
        self._check_file_once()
        img_info = raw_data_info['raw_img_info']
        for ann in raw_data_info['raw_ann_info']:
            problem = self._check_box(ann, img_info)
            if problem is None:
                if min(ann['bbox'][2:]) < 1:
                    self._tiny.append(ann)
                elif ann['area'] <= 0:
                    self._no_area.append(ann)
                continue
            if self.invalid_boxes == 'error':
                raise ValueError(
                    f'{self.ann_file}: annotation id {ann.get("id")} of image '
                    f'id {img_info["id"]} ({img_info["file_name"]}): box '
                    f'{ann["bbox"]} {problem}. Fix the annotation or build '
                    'the dataset with invalid_boxes="skip".')
            self._num_skipped += 1
        return super().parse_data_info(raw_data_info)


@DATASETS.register_module()
class ValidatedCocoPanopticDataset(_CocoValidation, CocoPanopticDataset):
    """:class:`mmdet.datasets.CocoPanopticDataset` with the same path, JSON
    and class checks as :class:`ValidatedCocoDataset`."""

    def _check_paths(self) -> None:
        super()._check_paths()
        check_dataset_files(type(self).__name__, self.data_root,
                            {'panoptic PNG folder':
                             self.data_prefix.get('seg', '')},
                            self.generator_kind)

    def load_data_list(self) -> List[dict]:
        self._check_paths()
        return self._load_with_context(super().load_data_list)

    def parse_data_info(self, raw_data_info: dict) -> dict:
        self._check_classes_once()
        return super().parse_data_info(raw_data_info)
