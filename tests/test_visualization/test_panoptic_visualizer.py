"""PanopticDetLocalVisualizer draws all-void panoptic predictions (mmdet's
DetLocalVisualizer raises on them) and draws segments as mmdet."""
import numpy as np
import pytest
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.structures import DetDataSample
from mmdet.visualization import DetLocalVisualizer
from mmengine.structures import PixelData

from vitdense.visualization import PanopticDetLocalVisualizer

META = dict(classes=('circle', 'square', 'sky'),
            thing_classes=('circle', 'square'), stuff_classes=('sky', ),
            palette=[(220, 20, 60), (0, 0, 142), (70, 130, 180)])


def _sample(panoptic: torch.Tensor) -> DetDataSample:
    sample = DetDataSample()
    sample.pred_panoptic_seg = PixelData(sem_seg=panoptic[None])
    return sample


def test_panoptic_visualizer_draws_all_void_map_as_the_image():
    image = np.random.RandomState(0).randint(0, 255, (24, 32, 3), np.uint8)
    void = _sample(torch.full((24, 32), 3, dtype=torch.int32))
    mmdet_vis = DetLocalVisualizer(name='mmdet_void')
    mmdet_vis.dataset_meta = META
    with pytest.raises(ValueError, match='need at least one array'):
        mmdet_vis.add_datasample('void', image, void, draw_gt=False)
    vis = PanopticDetLocalVisualizer(name='vitdense_void')
    vis.dataset_meta = META
    vis.add_datasample('void', image, void, draw_gt=False)
    np.testing.assert_array_equal(vis.get_image(), image)


def test_panoptic_visualizer_draws_segments_as_mmdet():
    image = np.zeros((24, 32, 3), np.uint8)
    panoptic = torch.full((24, 32), 2, dtype=torch.int32)
    panoptic[4:12, 4:12] = 1 + INSTANCE_OFFSET
    drawn = []
    for i, cls in enumerate((DetLocalVisualizer, PanopticDetLocalVisualizer)):
        vis = cls(name=f'segments{i}')
        vis.dataset_meta = META
        vis.add_datasample('pan', image, _sample(panoptic), draw_gt=False)
        drawn.append(vis.get_image())
    np.testing.assert_array_equal(drawn[0], drawn[1])
    assert (drawn[1] != image).any()
