# KITTI monocular 3D runtime: the detection runtime drawing projected 3D boxes
# and a bird's-eye view (tools/test.py --show-dir, tools/misc/browse_dataset.py).
_base_ = './default_runtime.py'

visualizer = dict(type='KittiMonoVisualizer')
