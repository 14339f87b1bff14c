"""Camera-frame 3D boxes: vitdense's KITTI convention in one place.

A box is ``(x, y, z, l, h, w, ry)`` in the rectified camera frame (x right,
y down, z forward), ``(x, y, z)`` the bottom centre as in KITTI ``label_2``
and ``ry`` the rotation around the camera's y axis, the order of mmdet3d's
``CameraInstance3DBoxes`` (mmdet3d cannot be installed next to mmdet 3.3).
The embedded data generator, the mono-3D transforms, the KITTI metric and
the visualizer all use these functions.
"""
import numpy as np

__all__ = ['box3d_corners', 'project_to_image', 'wrap_angle']


def box3d_corners(boxes: np.ndarray) -> np.ndarray:
    """The 8 corners ``(N, 8, 3)`` of camera-frame boxes ``(N, 7)``
    ``(x, y, z, l, h, w, ry)``: corners 0-3 on the ground (0, 1 at the front,
    the +x end of the object), 4-7 above them."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 7)
    l, h, w, ry = boxes[:, 3:4], boxes[:, 4:5], boxes[:, 5:6], boxes[:, 6:7]
    dx = np.array([1, 1, -1, -1, 1, 1, -1, -1]) / 2 * l
    dy = -np.array([0, 0, 0, 0, 1, 1, 1, 1]) * h
    dz = np.array([1, -1, -1, 1, 1, -1, -1, 1]) / 2 * w
    c, s = np.cos(ry), np.sin(ry)
    x = boxes[:, 0:1] + c * dx + s * dz
    z = boxes[:, 2:3] - s * dx + c * dz
    return np.stack([x, boxes[:, 1:2] + dy, z], -1)


def project_to_image(points: np.ndarray, cam2img: np.ndarray) -> np.ndarray:
    """Project camera-frame points ``(..., 3)`` through a 3x4 ``cam2img``
    into pixels ``(..., 2)`` (division by the projected depth)."""
    points = np.asarray(points, np.float64)
    flat = points.reshape(-1, 3)
    homogeneous = np.concatenate([flat, np.ones((len(flat), 1))], 1)
    pixels = homogeneous @ np.asarray(cam2img, np.float64).T
    return (pixels[:, :2] / pixels[:, 2:]).reshape(*points.shape[:-1], 2)


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Wrap angles to [-pi, pi)."""
    return (np.asarray(angle, np.float64) + np.pi) % (2 * np.pi) - np.pi
