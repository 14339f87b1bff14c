"""mmdet's ``DetLocalVisualizer`` that also draws all-void panoptic maps.

mmdet 3.3's ``DetLocalVisualizer._draw_panoptic_seg`` stacks the areas of
the non-void segments and raises ``ValueError: need at least one array to
stack`` when a map has none (an early checkpoint, an empty image), which
stops ``tools/test.py --show-dir``; this subclass returns the image unchanged
for such a map and otherwise draws as mmdet.
"""
from typing import List, Optional

import numpy as np
from mmdet.visualization import DetLocalVisualizer
from mmengine.structures import PixelData

from vitdense.registry import VISUALIZERS

__all__ = ['PanopticDetLocalVisualizer']


@VISUALIZERS.register_module()
class PanopticDetLocalVisualizer(DetLocalVisualizer):
    """``DetLocalVisualizer`` drawing all-void panoptic maps as the bare
    image (see the module docstring)."""

    def _draw_panoptic_seg(self, image: np.ndarray, panoptic_seg: PixelData,
                           classes: Optional[List[str]],
                           palette: Optional[List]) -> np.ndarray:
        void = panoptic_seg.metainfo.get('ignore_index', len(classes))
        if not (np.asarray(panoptic_seg.sem_seg[0]) != void).any():
            return image
        return super()._draw_panoptic_seg(image, panoptic_seg, classes,
                                          palette)
