"""Packing of classification samples into mmdet's data structures.

Multi-task models (Uni-Perceiver v2, arXiv 2211.09808) take detection and
classification batches through one data preprocessor and one ``DetDataSample``
type, so a classification sample is a ``DetDataSample`` with a ``gt_label``
field and ``task='classification'`` in its metainfo. mmdet's
``PackDetInputs`` has no label field (and adds empty instance fields);
mmpretrain's ``PackInputs`` builds mmpretrain's own ``DataSample`` and cannot
be imported here (mmpretrain imports torchvision).
"""
from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform, to_tensor
from mmdet.structures import DetDataSample

from vitdense.registry import TRANSFORMS

__all__ = ['PackClsInputs']


@TRANSFORMS.register_module()
class PackClsInputs(BaseTransform):
    """Pack an image and its class label.

    ``inputs``: the image as a contiguous (C, H, W) tensor, converted as
    mmdet's ``PackDetInputs`` does. ``data_samples``: a ``DetDataSample``
    with ``gt_label`` (LongTensor of shape (1,)) when the results have one,
    and the ``meta_keys`` present in the results as metainfo; ``task`` is
    ``'classification'`` unless the results say otherwise.
    """

    def __init__(self,
                 meta_keys: Sequence[str] = ('img_path', 'ori_shape',
                                             'img_shape', 'scale_factor',
                                             'task')):
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        packed = {}
        if 'img' in results:
            img = results['img']
            if img.ndim < 3:
                img = np.expand_dims(img, -1)
            if not img.flags.c_contiguous:
                packed['inputs'] = to_tensor(
                    np.ascontiguousarray(img.transpose(2, 0, 1)))
            else:
                packed['inputs'] = to_tensor(img).permute(2, 0,
                                                          1).contiguous()
        data_sample = DetDataSample()
        if 'gt_label' in results:
            label = torch.as_tensor(np.asarray(results['gt_label']),
                                    dtype=torch.long).reshape(-1)
            if label.numel() != 1:
                raise ValueError(
                    f'{type(self).__name__}: gt_label of '
                    f'{results.get("img_path")} must be one class index, '
                    f'got {results["gt_label"]!r}')
            data_sample.gt_label = label
        meta = {key: results[key] for key in self.meta_keys if key in results}
        if 'task' in self.meta_keys:
            meta.setdefault('task', 'classification')
        data_sample.set_metainfo(meta)
        packed['data_samples'] = data_sample
        return packed

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'
