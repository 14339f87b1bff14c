"""mmdet's COCO loaders with input validation that fails loudly.

mmdet's :class:`~mmdet.datasets.CocoDataset` silently drops boxes with zero
or negative size or outside the image, and accepts ``classes`` that the json
does not contain, both of which give a wrong metric without a word. These
subclasses keep mmdet's parsing and add checks with errors that name the file
and the annotation.
"""
import json
import os.path as osp
from typing import List, Union

from mmdet.datasets import CocoDataset, CocoPanopticDataset
from mmengine.logging import print_log

from vitdense.registry import DATASETS

__all__ = ['ValidatedCocoDataset', 'ValidatedCocoPanopticDataset',
           'check_dataset_files']

#: A box may exceed the image by this many pixels (float rounding in COCO).
BORDER_TOLERANCE = 1.0


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

    Args:
        invalid_boxes (str): ``'error'`` (default) raises on a box with zero
            or negative size or outside its image; ``'skip'`` drops such
            boxes (mmdet's behaviour) and warns with their count.
        **kwargs: as :class:`~mmdet.datasets.CocoDataset`.
    """

    def __init__(self, *args, invalid_boxes: str = 'error', **kwargs):
        if invalid_boxes not in ('error', 'skip'):
            raise ValueError("invalid_boxes must be 'error' or 'skip', got "
                             f'{invalid_boxes!r}')
        self.invalid_boxes = invalid_boxes
        self._num_skipped = 0
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        self._check_paths()
        data_list = self._load_with_context(super().load_data_list)
        empty = sum(1 for d in data_list if not d['instances'])
        if empty:
            print_log(f'{self.ann_file}: {empty} of {len(data_list)} images '
                      'have no annotations', logger='current')
        if self._num_skipped:
            print_log(f'{self.ann_file}: skipped {self._num_skipped} invalid '
                      'boxes (invalid_boxes="skip")', logger='current',
                      level=30)
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> Union[dict, List[dict]]:
        self._check_classes_once()
        img_info = raw_data_info['raw_img_info']
        for ann in raw_data_info['raw_ann_info']:
            problem = self._check_box(ann, img_info)
            if problem is None:
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
