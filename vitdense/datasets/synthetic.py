"""Small datasets in the on-disk formats of COCO, ADE20K, KITTI and ImageNet.

No real dataset can be downloaded where vitdense is developed and tested, so
these generators produce tens of images that the *real* loaders read
unchanged (mmdet ``CocoDataset``/``CocoPanopticDataset``, mmseg
``ADE20KDataset``, vitdense ``KittiMonoDataset`` and
``ImageNetFolderDataset``, which reads mmpretrain's ImageNet layout).
Pointing a config at real data is a change of ``data_root`` only.
Everything is deterministic given the seed. A generator writes a
``.vitdense-synthetic`` marker into its folder before anything else and a
``.complete`` file last, so an interrupted run is regenerated rather than
half-read; a non-empty folder without the marker is never written into or
deleted (it may be a user's real dataset).
"""
import json
import math
import os
import os.path as osp
import shutil
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from vitdense.structures import box3d_corners, project_to_image

__all__ = [
    'COCO_SHAPES_CLASSES', 'ADE20K_SHAPES_LABELS', 'KITTI_P2',
    'IMAGENET_SHAPES_CLASSES', 'BPE_SPECIAL_TOKENS', 'BPE_PROMPTS',
    'make_coco_shapes', 'make_ade20k_shapes', 'make_kitti_shapes',
    'make_imagenet_shapes', 'write_shapes_bpe', 'ensure_dataset',
    'dataset_state'
]

#: COCO-format "shapes": thing classes (ids as in the json) and stuff classes.
COCO_SHAPES_CLASSES = ({'id': 1, 'name': 'circle', 'isthing': 1},
                       {'id': 2, 'name': 'square', 'isthing': 1},
                       {'id': 3, 'name': 'triangle', 'isthing': 1},
                       {'id': 4, 'name': 'sky', 'isthing': 0},
                       {'id': 5, 'name': 'ground', 'isthing': 0})
#: Classes of the ImageNet-format set, in label order; the first three are
#: COCO shapes' things, drawn the same way (:func:`_shape_mask`).
IMAGENET_SHAPES_CLASSES = ('circle', 'square', 'triangle', 'ellipse', 'star',
                           'cross', 'diamond', 'ring', 'crescent', 'arrow')
#: Special tokens of the BPE vocabulary, ids 0..4 as in roberta-base.
BPE_SPECIAL_TOKENS = ('<s>', '<pad>', '</s>', '<unk>', '<mask>')
#: Prompt templates the BPE vocabulary is trained on (with every class name).
BPE_PROMPTS = ('a photo of a {}.', 'a picture of a {}.', 'an image of a {}.',
               'a {} shape.', 'this is a {}.', 'there is a {} in the image.')
#: ADE20K label values used (real ADE20K indices; 0 = "other", ignored).
ADE20K_SHAPES_LABELS = {'wall': 1, 'building': 2, 'sky': 3, 'floor': 4,
                        'tree': 5}
#: KITTI object/training 000000 camera-2 projection matrix (a real calib).
KITTI_P2 = np.array([[721.5377, 0.0, 609.5593, 44.85728],
                     [0.0, 721.5377, 172.854, 0.2163791],
                     [0.0, 0.0, 1.0, 0.002745884]])
_DONE = '.complete'
#: Written first by every generator: the folder is the generator's to rewrite.
_STARTED = '.vitdense-synthetic'


def dataset_state(root: str) -> str:
    """Say what is at ``root``: ``'absent'`` (missing or an empty folder),
    ``'complete'``, ``'partial'`` (an interrupted generation) or ``'foreign'``
    (anything else, which the generators refuse to touch)."""
    if not osp.exists(root) or (osp.isdir(root) and not os.listdir(root)):
        return 'absent'
    if osp.isdir(root):
        if osp.exists(osp.join(root, _DONE)):
            return 'complete'
        if osp.exists(osp.join(root, _STARTED)):
            return 'partial'
    return 'foreign'


def _claim_root(root: str, kind: str) -> None:
    """Make ``root`` an empty folder marked as this generator's.

    Only a folder that a generator created (it carries the marker) is
    deleted; a non-empty folder without it raises ``FileExistsError``.
    """
    state = dataset_state(root)
    if state == 'foreign':
        raise FileExistsError(
            f'{root} is not empty and was not written by vitdense\'s '
            f'synthetic-data generator (no {_STARTED} or {_DONE} marker); '
            'refusing to write into or delete it. Choose a new or empty '
            'folder.')
    if state != 'absent':
        shutil.rmtree(root)
    os.makedirs(root, exist_ok=True)
    with open(osp.join(root, _STARTED), 'w') as f:
        f.write(kind + '\n')


def ensure_dataset(kind: str, root: str, **kwargs) -> str:
    """Create dataset ``kind`` ('coco', 'ade20k', 'kitti', 'imagenet') at
    ``root`` unless a complete copy is already there; return ``root``. A
    foreign non-empty ``root`` raises ``FileExistsError``."""
    makers = {'coco': make_coco_shapes, 'ade20k': make_ade20k_shapes,
              'kitti': make_kitti_shapes, 'imagenet': make_imagenet_shapes}
    if kind not in makers:
        raise ValueError(f'kind must be one of {sorted(makers)}, got {kind!r}')
    if dataset_state(root) != 'complete':
        makers[kind](root, **kwargs)
    return root


def _background(rng: np.random.Generator, height: int, width: int,
                split_row: int) -> np.ndarray:
    """Textured two-region background: smooth colour gradients plus noise."""
    top, bottom = rng.integers(40, 216, size=(2, 3))
    image = np.empty((height, width, 3), np.float32)
    image[:split_row] = top
    image[split_row:] = bottom
    ramp = np.linspace(-20, 20, width, dtype=np.float32)[None, :, None]
    image += ramp * rng.uniform(-1, 1)
    image += rng.normal(0, 12, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _star(points: int, outer: float, inner: float) -> np.ndarray:
    """Vertices of a star, alternating ``outer`` and ``inner`` radii."""
    angles = np.arange(2 * points) * np.pi / points
    radius = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], 1)


#: Outlines of the polygon shapes of :data:`IMAGENET_SHAPES_CLASSES` after
#: the first three, in units of ``size / 2`` (unrotated, centred at 0).
_OUTLINES = {
    5: _star(5, 1.2, 0.5),  # star
    6: np.array([(1, -0.35), (1, 0.35), (0.35, 0.35), (0.35, 1),
                 (-0.35, 1), (-0.35, 0.35), (-1, 0.35), (-1, -0.35),
                 (-0.35, -0.35), (-0.35, -1), (0.35, -1),
                 (0.35, -0.35)]),  # cross
    7: np.array([(1.15, 0.0), (0.0, 0.6), (-1.15, 0.0),
                 (0.0, -0.6)]),  # diamond (rhombus)
    10: np.array([(-1, -0.25), (0.15, -0.25), (0.15, -0.7), (1.1, 0),
                  (0.15, 0.7), (0.15, 0.25), (-1, 0.25)]),  # arrow
}


def _shape_mask(kind: int, height: int, width: int, cx: float, cy: float,
                size: float, angle: float) -> np.ndarray:
    """Filled mask of shape ``kind`` (1-based index into
    :data:`IMAGENET_SHAPES_CLASSES`; COCO shapes use 1-3) about ``size``
    pixels across, centred at (cx, cy) and rotated by ``angle`` radians."""
    mask = np.zeros((height, width), np.uint8)
    centre = (int(round(cx)), int(round(cy)))
    radius = max(int(round(size / 2)), 1)
    if kind in (1, 8, 9):  # circle, ring, crescent
        cv2.circle(mask, centre, radius, 1, -1)
        if kind == 8:
            cv2.circle(mask, centre, max(int(round(size / 4)), 1), 0, -1)
        elif kind == 9:
            shift = 0.45 * size / 2
            cv2.circle(mask, (int(round(cx + shift * math.cos(angle))),
                              int(round(cy + shift * math.sin(angle)))),
                       max(int(round(0.85 * size / 2)), 1), 0, -1)
        return mask
    if kind == 4:  # ellipse, axes 2:1
        axes = (radius, max(int(round(size / 4)), 1))
        cv2.ellipse(mask, centre, axes, math.degrees(angle), 0, 360, 1, -1)
        return mask
    if kind in _OUTLINES:
        cos, sin = math.cos(angle), math.sin(angle)
        rotation = np.array([[cos, -sin], [sin, cos]])
        points = _OUTLINES[kind] @ rotation.T * (size / 2) + (cx, cy)
    else:  # square, triangle
        corners = 4 if kind == 2 else 3
        angles = angle + np.arange(corners) * 2 * np.pi / corners
        radius = size / 2 * (math.sqrt(2) if kind == 2 else 1.15)
        points = np.stack([cx + radius * np.cos(angles),
                           cy + radius * np.sin(angles)], 1)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask


def _polygons(mask: np.ndarray) -> List[List[float]]:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours
            if len(c) >= 3]


def _uncompressed_rle(mask: np.ndarray) -> Dict:
    """COCO crowd format: column-major run lengths starting with zeros."""
    flat = mask.flatten(order='F')
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {'counts': counts, 'size': list(mask.shape)}


def _as_rle(segmentation, height: int, width: int) -> Dict:
    if isinstance(segmentation, list):
        return mask_utils.merge(
            mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation['counts'], list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def _compressed_rle(mask: np.ndarray) -> Dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    return rle


def _draw_shapes(rng: np.random.Generator, image: np.ndarray,
                 max_objects: int, max_overlap: float = 0.2
                 ) -> List[Tuple[int, np.ndarray]]:
    """Paint shapes in order; return their visible masks.

    A new shape may cover at most ``max_overlap`` of the shapes already
    painted (up to 20 placements are tried), so most objects stay mostly
    visible; a shape with under 1% of the image left visible is dropped.
    """
    height, width = image.shape[:2]
    painted = []
    occupied = np.zeros((height, width), bool)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        kind = int(rng.integers(1, 4))
        size = float(rng.uniform(0.18, 0.42) * min(height, width))
        for _ in range(20):
            cx = float(rng.uniform(size / 2, width - size / 2))
            cy = float(rng.uniform(size / 2, height - size / 2))
            mask = _shape_mask(kind, height, width, cx, cy, size,
                               float(rng.uniform(0, np.pi)))
            if (mask.astype(bool) & occupied).sum() <= \
                    max_overlap * mask.sum():
                break
        else:
            continue
        colour = rng.integers(0, 256, size=3)
        shade = rng.normal(0, 8, size=image.shape)
        filled = np.clip(colour[None, None] + shade, 0, 255).astype(np.uint8)
        image[mask > 0] = filled[mask > 0]
        occupied |= mask.astype(bool)
        for _, earlier in painted:
            earlier[mask > 0] = 0
        painted.append((kind, mask))
    min_area = 0.01 * height * width
    return [(k, m) for k, m in painted if m.sum() >= min_area]


def make_coco_shapes(root: str,
                     num_train: int = 400,
                     num_val: int = 50,
                     image_size: Tuple[int, int] = (128, 128),
                     max_objects: int = 4,
                     crowd_prob: float = 0.05,
                     seed: int = 0) -> str:
    """Write COCO-format detection, instance and panoptic annotations.

    Layout (as COCO 2017 with shorter split names)::

        root/train/000000.jpg, root/val/...
        root/annotations/instances_{train,val}.json   bbox, polygon, RLE
        root/annotations/panoptic_{train,val}.json    + panoptic_{split}/*.png

    Segmentations alternate between polygons and compressed RLE; a few
    objects are crowds with uncompressed RLE, as real COCO crowds are.
    """
    height, width = image_size
    rng = np.random.default_rng(seed)
    _claim_root(root, 'coco')
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    for split, count in (('train', num_train), ('val', num_val)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        pan_dir = osp.join(root, 'annotations', f'panoptic_{split}')
        os.makedirs(pan_dir, exist_ok=True)
        images, annotations, pan_annotations = [], [], []
        for index in range(count):
            image_id = index + 1
            file_name = f'{index:06d}.jpg'
            split_row = int(rng.integers(height // 3, 2 * height // 3))
            image = _background(rng, height, width, split_row)
            shapes = _draw_shapes(rng, image, max_objects)
            cv2.imwrite(osp.join(root, split, file_name), image[..., ::-1],
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            images.append({'id': image_id, 'file_name': file_name,
                           'height': height, 'width': width})
            pan_ids = np.zeros((height, width), np.int64)
            segments = []
            for order, (kind, mask) in enumerate(shapes):
                crowd = int(rng.random() < crowd_prob)
                if crowd:
                    segmentation = _uncompressed_rle(mask)
                elif order % 2 == 0:
                    segmentation = _polygons(mask)
                else:
                    segmentation = _compressed_rle(mask)
                # As in COCO, bbox and area are those of the stored
                # segmentation (a traced polygon differs from the pixels).
                rle = _as_rle(segmentation, height, width)
                bbox = [float(v) for v in mask_utils.toBbox(rle)]
                annotations.append({
                    'id': len(annotations) + 1, 'image_id': image_id,
                    'category_id': kind, 'bbox': bbox,
                    'area': float(mask_utils.area(rle)), 'iscrowd': crowd,
                    'segmentation': segmentation})
                segment_id = (order + 1) * 40 + kind
                pan_ids[mask > 0] = segment_id
                segments.append({'id': segment_id, 'category_id': kind,
                                 'iscrowd': crowd, 'bbox': bbox,
                                 'area': int(mask.sum())})
            for stuff_id, rows in ((4, slice(0, split_row)),
                                   (5, slice(split_row, height))):
                region = np.zeros((height, width), bool)
                region[rows] = True
                region &= pan_ids == 0
                if not region.any():
                    continue
                segment_id = stuff_id * 1000 + 7
                pan_ids[region] = segment_id
                ys, xs = np.nonzero(region)
                segments.append({
                    'id': segment_id, 'category_id': stuff_id, 'iscrowd': 0,
                    'bbox': [int(xs.min()), int(ys.min()),
                             int(xs.max() - xs.min() + 1),
                             int(ys.max() - ys.min() + 1)],
                    'area': int(region.sum())})
            png_name = file_name.replace('.jpg', '.png')
            rgb = np.stack([pan_ids % 256, pan_ids // 256 % 256,
                            pan_ids // 65536], -1).astype(np.uint8)
            cv2.imwrite(osp.join(pan_dir, png_name), rgb[..., ::-1])
            pan_annotations.append({'image_id': image_id,
                                    'file_name': png_name,
                                    'segments_info': segments})
        info = {'description': 'vitdense synthetic shapes (COCO format)',
                'version': '1.0', 'year': 2026}
        things = [dict(c, supercategory='shape') for c in COCO_SHAPES_CLASSES
                  if c['isthing']]
        with open(osp.join(root, 'annotations',
                           f'instances_{split}.json'), 'w') as f:
            json.dump({'info': info, 'licenses': [], 'images': images,
                       'annotations': annotations,
                       'categories': [{k: c[k] for k in
                                       ('id', 'name', 'supercategory')}
                                      for c in things]}, f)
        with open(osp.join(root, 'annotations',
                           f'panoptic_{split}.json'), 'w') as f:
            json.dump({'info': info, 'licenses': [], 'images': images,
                       'annotations': pan_annotations,
                       'categories': [dict(c, supercategory='shape')
                                      for c in COCO_SHAPES_CLASSES]}, f)
    open(osp.join(root, _DONE), 'w').close()
    return root


def _balanced_labels(rng: np.random.Generator, count: int,
                     num_classes: int) -> np.ndarray:
    """``count`` labels in random order, every class ``count // num_classes``
    or one more times."""
    return rng.permutation(np.arange(count) % num_classes)


def _shape_crop(rng: np.random.Generator, kind: int, height: int,
                width: int) -> np.ndarray:
    """One shape of ``kind`` on a :func:`_background`, random size (35-70%
    of the shorter side), position, rotation and colour; the colour differs
    from the background under the shape by at least 60 grey levels on
    average (up to 20 draws), so the shape always shows."""
    image = _background(rng, height, width,
                        int(rng.integers(height // 3, 2 * height // 3)))
    size = float(rng.uniform(0.35, 0.7) * min(height, width))
    cx = float(rng.uniform(size / 2, width - size / 2))
    cy = float(rng.uniform(size / 2, height - size / 2))
    mask = _shape_mask(kind, height, width, cx, cy, size,
                       float(rng.uniform(0, 2 * np.pi))) > 0
    under = image[mask].astype(np.float32).mean(0)
    for _ in range(20):
        colour = rng.integers(0, 256, size=3)
        if np.abs(colour - under).mean() >= 60:
            break
    shade = rng.normal(0, 8, size=image.shape)
    filled = np.clip(colour[None, None] + shade, 0, 255).astype(np.uint8)
    image[mask] = filled[mask]
    return image


def write_shapes_bpe(folder: str) -> str:
    """Train a byte-level BPE vocabulary on the class names of the embedded
    COCO and ImageNet shapes and :data:`BPE_PROMPTS`, and write
    ``vocab.json`` and ``merges.txt`` into ``folder`` (the two files of
    roberta-base that ``RobertaTokenizerFast(vocab_file, merges_file)``
    reads). Special tokens :data:`BPE_SPECIAL_TOKENS` get ids 0..4. Every
    name and prompt word ends up a token of its own (with and without the
    leading space), so the tiny text encoder sees whole words.
    """
    from tokenizers import ByteLevelBPETokenizer
    names = sorted({c['name'] for c in COCO_SHAPES_CLASSES} |
                   set(IMAGENET_SHAPES_CLASSES))
    texts = names + [p.format(n) for p in BPE_PROMPTS for n in names]
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(texts, vocab_size=1000, min_frequency=1,
                                  special_tokens=list(BPE_SPECIAL_TOKENS),
                                  show_progress=False)
    os.makedirs(folder, exist_ok=True)
    tokenizer.save_model(folder)
    return folder


def make_imagenet_shapes(root: str,
                         num_train: int = 1000,
                         num_val: int = 200,
                         image_size: Tuple[int, int] = (128, 128),
                         seed: int = 0) -> str:
    """Write single-shape classification data in ImageNet's folder layout
    (as mmpretrain's ``ImageNet`` reads it)::

        root/train/s0000_circle/s0000_circle_00000.JPEG   class folders
        root/val/val_00000000.JPEG                          flat
        root/meta/train.txt    "s0000_circle/s0000_circle_00000.JPEG 0"
        root/meta/val.txt      "val_00000000.JPEG 7"
        root/meta/classes.txt  one class name per line, label order
        root/meta/bpe/{vocab.json,merges.txt}   :func:`write_shapes_bpe`

    Class folders are synset-like ids (``s<label>_<name>``) as ImageNet's
    ``n01440764``. The classes are :data:`IMAGENET_SHAPES_CLASSES`, each
    split balanced (counts differ by at most one) in random order; an
    image holds one shape (:func:`_shape_crop`).
    """
    height, width = image_size
    rng = np.random.default_rng(seed)
    classes = IMAGENET_SHAPES_CLASSES
    folders = [f's{label:04d}_{name}' for label, name in enumerate(classes)]
    _claim_root(root, 'imagenet')
    meta = osp.join(root, 'meta')
    os.makedirs(meta, exist_ok=True)
    for split, count in (('train', num_train), ('val', num_val)):
        lines = []
        for index, label in enumerate(
                _balanced_labels(rng, count, len(classes))):
            image = _shape_crop(rng, int(label) + 1, height, width)
            if split == 'train':
                name = f'{folders[label]}/{folders[label]}_{index:05d}.JPEG'
            else:
                name = f'val_{index:08d}.JPEG'
            path = osp.join(root, split, name)
            os.makedirs(osp.dirname(path), exist_ok=True)
            cv2.imwrite(path, image[..., ::-1],
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            lines.append(f'{name} {label}')
        with open(osp.join(meta, f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + ('\n' if lines else ''))
    with open(osp.join(meta, 'classes.txt'), 'w') as f:
        f.write('\n'.join(classes) + '\n')
    write_shapes_bpe(osp.join(meta, 'bpe'))
    open(osp.join(root, _DONE), 'w').close()
    return root


def make_ade20k_shapes(root: str,
                       num_train: int = 40,
                       num_val: int = 10,
                       image_size: Tuple[int, int] = (128, 160),
                       seed: int = 0) -> str:
    """Write ADE20K-format scene parsing data.

    ``images/{training,validation}/ADE_*.jpg`` and
    ``annotations/{training,validation}/ADE_*.png`` with real ADE20K label
    values (0 = other/ignored, so ``reduce_zero_label`` applies as on the
    real dataset): sky above, wall/building blocks, floor below, trees as
    discs, and thin unlabelled (0) seams between regions.
    """
    height, width = image_size
    rng = np.random.default_rng(seed)
    _claim_root(root, 'ade20k')
    labels = ADE20K_SHAPES_LABELS
    palette = {0: (0, 0, 0), labels['wall']: (120, 120, 120),
               labels['building']: (180, 120, 120),
               labels['sky']: (6, 230, 230), labels['floor']: (80, 50, 50),
               labels['tree']: (4, 200, 3)}
    for split, prefix, count in (('training', 'train', num_train),
                                 ('validation', 'val', num_val)):
        image_dir = osp.join(root, 'images', split)
        ann_dir = osp.join(root, 'annotations', split)
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for index in range(count):
            seg = np.full((height, width), labels['sky'], np.uint8)
            horizon = int(rng.integers(height // 2, 3 * height // 4))
            seg[horizon:] = labels['floor']
            for _ in range(int(rng.integers(1, 4))):
                x0 = int(rng.integers(0, width - 20))
                x1 = int(min(width, x0 + rng.integers(16, width // 2)))
                top = int(rng.integers(height // 6, horizon - 8))
                kind = labels['building'] if rng.random() < 0.5 \
                    else labels['wall']
                seg[top:horizon, x0:x1] = kind
            for _ in range(int(rng.integers(0, 3))):
                radius = int(rng.integers(6, 18))
                centre = (int(rng.integers(radius, width - radius)),
                          int(rng.integers(radius, horizon)))
                cv2.circle(seg, centre, radius, labels['tree'], -1)
            edges = cv2.morphologyEx(seg, cv2.MORPH_GRADIENT,
                                     np.ones((2, 2), np.uint8)) > 0
            seg[edges] = 0
            colours = np.array([palette[k] for k in sorted(palette)],
                               np.float32)
            lut = np.zeros((256, 3), np.float32)
            lut[sorted(palette)] = colours
            image = lut[seg] + rng.normal(0, 10, size=(height, width, 3))
            image = np.clip(image, 0, 255).astype(np.uint8)
            name = f'ADE_{prefix}_{index + 1:08d}'
            cv2.imwrite(osp.join(image_dir, name + '.jpg'), image[..., ::-1],
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(osp.join(ann_dir, name + '.png'), seg)
    open(osp.join(root, _DONE), 'w').close()
    return root


def _corners(dims_hwl: Sequence[float], location: Sequence[float],
             rotation_y: float) -> np.ndarray:
    """The 8 corners (3×8) of a box given as KITTI ``label_2`` writes it
    (h, w, l; bottom-centre location; ry)."""
    h, w, l = dims_hwl
    return box3d_corners([*location, l, h, w, rotation_y])[0].T


def _project(P: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Pixels (2×N) of camera-frame points (3×N)."""
    return project_to_image(points.T, P).T


#: Corner indices of the box faces (corner order of :func:`vitdense.structures.box3d_corners`)
#: and their brightness: the front (the +x axis of the object, the heading
#: direction of ``rotation_y``) is lit, the sides less, the back least.
_FACES = (('front', (0, 1, 5, 4), 1.0), ('back', (2, 3, 7, 6), 0.4),
          ('left', (0, 3, 7, 4), 0.8), ('right', (1, 2, 6, 5), 0.6),
          ('top', (4, 5, 6, 7), 0.95), ('bottom', (0, 1, 2, 3), 0.3))


def _camera_centre(P: np.ndarray) -> np.ndarray:
    """Optical centre of projection ``P`` (its null space), in the frame of
    the labels."""
    return -np.linalg.solve(P[:, :3], P[:, 3])


def _paint_box(image: np.ndarray, P: np.ndarray, corners: np.ndarray,
               colour: Sequence[float]) -> np.ndarray:
    """Paint the faces of a box that face the camera, each with its own
    brightness (:data:`_FACES`), and return the mask of painted pixels.

    A face is visible when its outward normal points towards the optical
    centre (back-face culling); the visible faces of one box never overlap,
    so they need no order among themselves. The front face is also lighter
    (mixed with white) so the heading shows in every view.
    """
    height, width = image.shape[:2]
    pixels = _project(P, corners)
    centre = corners.mean(1)
    camera = _camera_centre(P)
    mask = np.zeros((height, width), np.uint8)
    for name, index, brightness in _FACES:
        face = corners[:, index]
        normal = face.mean(1) - centre
        if normal @ (camera - face.mean(1)) <= 0:
            continue
        shade = np.asarray(colour, np.float64) * brightness
        if name == 'front':
            shade = 0.55 * shade + 0.45 * 255
        polygon = np.round(pixels[:, index].T).astype(np.int32)
        face_mask = np.zeros((height, width), np.uint8)
        cv2.fillConvexPoly(face_mask, polygon, 1)
        image[face_mask > 0] = np.clip(shade, 0, 255).astype(np.uint8)
        mask |= face_mask
    return mask


def _format_matrix(name: str, matrix: np.ndarray) -> str:
    return name + ': ' + ' '.join(f'{v:.12e}' for v in matrix.reshape(-1))


def make_kitti_shapes(root: str,
                      num_train: int = 24,
                      num_val: int = 8,
                      scale: float = 0.25,
                      seed: int = 0) -> str:
    """Write KITTI object/training data: ``image_2``, ``label_2``, ``calib``,
    ``ImageSets/{train,val}.txt``.

    3D boxes are sampled on a ground plane in front of the camera, none
    overlapping another, their location, dimensions and rotation_y rounded
    to the two decimals that ``label_2`` stores; everything else derives
    from those values:
    the 2D box is the projection of the 8 corners through the real KITTI P2
    (scaled with the image by ``scale``) clipped to the image, truncation
    the fraction of that box outside the image, alpha
    ``rotation_y - atan2(x, z)`` wrapped to [-pi, pi) (the observation
    angle as mmdet3d's KITTI converter computes it; the devkit readme names
    it only), occlusion 0/1/2 from the fraction of the object's pixels
    left visible (over 0.9 / over 0.5 / else). Each box is painted with
    flat-shaded faces (:func:`_paint_box`: back faces culled, a light front,
    darker sides and back) far to near, so orientation and depth show in
    the image; nothing else (no text, no outlines) is drawn. Labels carry
    all 15 fields.
    """
    rng = np.random.default_rng(seed)
    _claim_root(root, 'kitti')
    width, height = int(round(1242 * scale)), int(round(375 * scale))
    P2 = KITTI_P2.copy()
    P2[:2] *= scale
    P3 = P2.copy()
    P3[0, 3] -= 0.54 * P2[0, 0]
    P0 = P2.copy()
    P0[:, 3] = 0
    R0 = np.eye(3)
    velo_to_cam = np.array([[0, -1, 0, 0], [0, 0, -1, -0.08],
                            [1, 0, 0, -0.27]], float)
    imu_to_velo = np.array([[1, 0, 0, -0.81], [0, 1, 0, 0.32],
                            [0, 0, 1, -0.80]], float)
    classes = {'Car': (1.53, 1.63, 3.88), 'Pedestrian': (1.76, 0.66, 0.84),
               'Cyclist': (1.74, 0.60, 1.76)}
    colours = {'Car': (230, 70, 60), 'Pedestrian': (70, 210, 90),
               'Cyclist': (70, 110, 230)}
    for sub in ('image_2', 'label_2', 'calib', 'ImageSets'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    ids = [f'{i:06d}' for i in range(num_train + num_val)]
    for sample_id in ids:
        image = _background(rng, height, width, int(height * 0.45))
        objects = []
        for _ in range(int(rng.integers(1, 5))):
            name = str(rng.choice(list(classes)))
            mean_dims = np.array(classes[name])
            dims = mean_dims * rng.uniform(0.9, 1.1, size=3)
            z = float(rng.uniform(6, 40))
            x = float(rng.uniform(-0.5, 0.5) * z)
            # label_2 stores two decimals: everything derives from those
            dims = np.round(dims, 2)
            x, z = round(x, 2), round(z, 2)
            location = np.array([x, 1.65, z])
            rotation_y = round(float(rng.uniform(-np.pi, np.pi)), 2)
            corners = _corners(dims, location, rotation_y)
            if corners[2].min() < 1.0:
                continue
            # no two objects overlap on the ground (footprint circles)
            radius = math.hypot(dims[1], dims[2]) / 2
            if any(math.hypot(x - o['location'][0], z - o['location'][2]) <
                   radius + o['radius'] for o in objects):
                continue
            pixels = _project(P2, corners)
            x1, y1 = pixels.min(1)
            x2, y2 = pixels.max(1)
            cx1, cy1 = max(x1, 0), max(y1, 0)
            cx2, cy2 = min(x2, width - 1), min(y2, height - 1)
            if cx2 - cx1 < 2 or cy2 - cy1 < 2:
                continue
            truncated = 1 - ((cx2 - cx1) * (cy2 - cy1)) / ((x2 - x1) *
                                                           (y2 - y1))
            alpha = rotation_y - math.atan2(x, z)
            alpha = (alpha + np.pi) % (2 * np.pi) - np.pi
            objects.append(dict(name=name, dims=dims, location=location,
                                rotation_y=rotation_y, alpha=alpha,
                                truncated=float(truncated),
                                box=(cx1, cy1, cx2, cy2), corners=corners,
                                radius=radius))
        # Paint far to near by centre distance (painter's order; objects
        # never overlap); occlusion from the visible fraction.
        objects.sort(key=lambda o: -math.hypot(o['location'][0],
                                               o['location'][2]))
        owner = np.full((height, width), -1, np.int64)
        for index, obj in enumerate(objects):
            fade = 1.0 - obj['location'][2] / 120
            mask = _paint_box(image, P2, obj['corners'],
                              np.array(colours[obj['name']]) * fade)
            owner[mask > 0] = index
            obj['mask'] = mask
        lines = []
        for index, obj in enumerate(objects):
            area = obj['mask'].sum()
            visible = (owner == index).sum() / max(area, 1)
            occluded = 0 if visible > 0.9 else 1 if visible > 0.5 else 2
            h, w, l = obj['dims']
            x, y, z = obj['location']
            x1, y1, x2, y2 = obj['box']
            lines.append(
                f"{obj['name']} {obj['truncated']:.2f} {occluded} "
                f"{obj['alpha']:.2f} {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} "
                f'{h:.2f} {w:.2f} {l:.2f} {x:.2f} {y:.2f} {z:.2f} '
                f"{obj['rotation_y']:.2f}")
        cv2.imwrite(osp.join(root, 'image_2', sample_id + '.png'),
                    image[..., ::-1])
        with open(osp.join(root, 'label_2', sample_id + '.txt'), 'w') as f:
            f.write('\n'.join(lines) + ('\n' if lines else ''))
        with open(osp.join(root, 'calib', sample_id + '.txt'), 'w') as f:
            f.write('\n'.join([
                _format_matrix('P0', P0), _format_matrix('P1', P0),
                _format_matrix('P2', P2), _format_matrix('P3', P3),
                _format_matrix('R0_rect', R0),
                _format_matrix('Tr_velo_to_cam', velo_to_cam),
                _format_matrix('Tr_imu_to_velo', imu_to_velo)]) + '\n')
    with open(osp.join(root, 'ImageSets', 'train.txt'), 'w') as f:
        f.write('\n'.join(ids[:num_train]) + '\n')
    with open(osp.join(root, 'ImageSets', 'val.txt'), 'w') as f:
        f.write('\n'.join(ids[num_train:]) + '\n')
    open(osp.join(root, _DONE), 'w').close()
    return root
