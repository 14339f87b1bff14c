from .kitti_eval import kitti_eval
from .kitti_files import (read_kitti_label_dir, read_kitti_label_file,
                          round_kitti_anno, write_kitti_label_file)
from .panoptic import (PQStat, id2rgb, pq_compute, pq_compute_files,
                       pq_compute_single_image, pq_results, rgb2id)

__all__ = [
    'kitti_eval', 'read_kitti_label_dir', 'read_kitti_label_file',
    'round_kitti_anno', 'write_kitti_label_file', 'PQStat', 'id2rgb',
    'pq_compute', 'pq_compute_files', 'pq_compute_single_image',
    'pq_results', 'rgb2id'
]
