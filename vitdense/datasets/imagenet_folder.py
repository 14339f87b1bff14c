"""Image classification in ImageNet's folder layout, as mmpretrain reads it.

mmpretrain's ``ImageNet``/``CustomDataset`` define the format (annotation
lines ``<relative path> <label>``, or class folders scanned in sorted order
when there is no annotation file) but mmpretrain cannot be imported here (it
imports torchvision), so vitdense reads the same files itself, with errors
that name the file and line. Samples carry ``task='classification'`` for the
multi-task models (Uni-Perceiver v2, arXiv 2211.09808).
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmengine.dataset import BaseDataset

from vitdense.registry import DATASETS

from .coco import check_dataset_files

__all__ = ['ImageNetFolderDataset', 'IMAGE_EXTENSIONS']

#: Files a folder scan takes as images (mmpretrain's ``IMG_EXTENSIONS``).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                    '.tiff', '.webp')


@DATASETS.register_module()
class ImageNetFolderDataset(BaseDataset):
    """ImageNet-format classification dataset.

    Each data info holds ``img_path``, ``gt_label`` (int, index into
    ``metainfo['classes']``) and ``task='classification'``.

    Args:
        ann_file (str): mmpretrain's annotation list, one
            ``<path relative to data_prefix['img_path']> <label>`` per line
            (e.g. ImageNet's ``meta/train.txt``). ``''`` scans
            ``data_prefix['img_path']`` instead: each sub-folder is a class,
            labels in sorted folder order, images found recursively.
        classes (str | Sequence[str], optional): class names in label order,
            or a file with one name per line (relative to ``data_root``).
            ``metainfo=dict(classes=...)`` works too. Without either, the
            folder scan takes the folder names; an annotation list needs
            them.
        data_prefix (dict): ``img_path``, the image folder.

    Every listed image is checked to exist when the list is loaded (one
    directory listing per folder, not one ``stat`` per image; skipped for
    URI prefixes such as ``s3://``).
    """
    METAINFO = {'classes': None}

    def __init__(self,
                 ann_file: str = '',
                 classes: Optional[Union[str, Sequence[str]]] = None,
                 metainfo: Optional[dict] = None,
                 data_root: str = '',
                 data_prefix: dict = dict(img_path=''),
                 **kwargs):
        metainfo = dict(metainfo or {})
        if classes is not None:
            names = self._read_classes(classes, data_root)
            given = metainfo.get('classes')
            if given is not None and tuple(given) != names:
                raise ValueError(
                    f'{type(self).__name__}: classes {names} and '
                    f'metainfo classes {tuple(given)} differ; give one')
            metainfo['classes'] = names
        elif isinstance(metainfo.get('classes'), str):
            metainfo['classes'] = self._read_classes(metainfo['classes'],
                                                     data_root)
        super().__init__(ann_file=ann_file, metainfo=metainfo,
                         data_root=data_root, data_prefix=data_prefix,
                         **kwargs)

    def _read_classes(self, classes: Union[str, Sequence[str]],
                      data_root: str) -> Tuple[str, ...]:
        if not isinstance(classes, str):
            return tuple(classes)
        path = classes if osp.isabs(classes) or not data_root else \
            osp.join(data_root, classes)
        check_dataset_files(type(self).__name__, data_root,
                            {'classes file': path}, 'imagenet')
        with open(path) as f:
            names = tuple(line.strip() for line in f if line.strip())
        if not names:
            raise ValueError(f'{type(self).__name__}: classes file {path} '
                             'lists no class')
        return names

    def load_data_list(self) -> List[dict]:
        name = type(self).__name__
        if 'img_path' not in self.data_prefix:
            raise KeyError(f'{name}: data_prefix needs an "img_path" folder, '
                           f'got {self.data_prefix}')
        image_dir = self.data_prefix['img_path']
        check_dataset_files(name, self.data_root,
                            {'ann_file': self.ann_file,
                             'image folder': image_dir}, 'imagenet')
        if self.ann_file:
            samples = self._read_ann_file(image_dir)
            source = self.ann_file
        else:
            samples = self._scan_folders(image_dir)
            source = f'the class folders of {image_dir}'
        if not samples:
            raise ValueError(f'{name}: no images in {source}')
        return [{'img_path': path, 'gt_label': label,
                 'task': 'classification'} for path, label in samples]

    def _read_ann_file(self, image_dir: str) -> List[Tuple[str, int]]:
        name = type(self).__name__
        classes = self.metainfo.get('classes')
        if classes is None:
            raise ValueError(
                f'{name}: {self.ann_file} gives labels but no class names; '
                'pass classes=<list or classes file> or '
                'metainfo=dict(classes=...)')
        samples, where = [], []
        with open(self.ann_file) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                fields = line.strip().rsplit(' ', 1)
                location = f'{self.ann_file}:{number}'
                if len(fields) != 2 or not fields[0].strip():
                    raise ValueError(
                        f'{location}: expected "<relative path> <label>", '
                        f'got {line.strip()!r}')
                try:
                    label = int(fields[1])
                except ValueError:
                    raise ValueError(f'{location}: label {fields[1]!r} is '
                                     'not an integer') from None
                if not 0 <= label < len(classes):
                    raise ValueError(
                        f'{location}: label {label} is outside 0..'
                        f'{len(classes) - 1} ({len(classes)} classes)')
                samples.append((osp.join(image_dir, fields[0].strip()),
                                label))
                where.append(location)
        self._check_images_exist([path for path, _ in samples], where)
        return samples

    def _scan_folders(self, image_dir: str) -> List[Tuple[str, int]]:
        name = type(self).__name__
        folders = sorted(entry.name for entry in os.scandir(image_dir)
                         if entry.is_dir())
        if not folders:
            raise ValueError(f'{name}: {image_dir} has no class folders')
        classes = self.metainfo.get('classes')
        if classes is None:
            self._metainfo['classes'] = tuple(folders)
        elif len(classes) != len(folders):
            raise ValueError(
                f'{name}: {image_dir} has {len(folders)} class folders but '
                f'{len(classes)} classes are given')
        samples = []
        for label, folder in enumerate(folders):
            for current, dirs, files in os.walk(osp.join(image_dir, folder)):
                dirs.sort()
                samples.extend(
                    (osp.join(current, file), label) for file in sorted(files)
                    if file.lower().endswith(IMAGE_EXTENSIONS))
        return samples

    def _check_images_exist(self, paths: List[str],
                            where: List[str]) -> None:
        listings: Dict[str, set] = {}
        for path, location in zip(paths, where):
            if '://' in path:
                continue
            folder, file = osp.split(path)
            if folder not in listings:
                listings[folder] = set(os.listdir(folder)) \
                    if osp.isdir(folder) else set()
            if file not in listings[folder]:
                raise FileNotFoundError(
                    f'{location}: image {path} does not exist')
