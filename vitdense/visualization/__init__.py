from .kitti_visualizer import KittiMonoVisualizer, project_box_edges
from .panoptic_visualizer import PanopticDetLocalVisualizer

__all__ = [
    'KittiMonoVisualizer', 'PanopticDetLocalVisualizer', 'project_box_edges'
]
