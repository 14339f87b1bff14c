"""vitdense's camera-frame box geometry against the KITTI devkit's
definition (label_2: bottom-centre location, h/w/l, ry about camera y)."""
import math

import numpy as np
import pytest

from vitdense.structures import box3d_corners, project_to_image, wrap_angle


def _devkit_corners(x, y, z, l, h, w, ry):
    """The devkit's computeBox3D (MATLAB): R(ry) @ corners + location."""
    xs = np.array([l, l, -l, -l, l, l, -l, -l]) / 2
    ys = np.array([0, 0, 0, 0, -h, -h, -h, -h])
    zs = np.array([w, -w, -w, w, w, -w, -w, w]) / 2
    rotation = np.array([[math.cos(ry), 0, math.sin(ry)], [0, 1, 0],
                         [-math.sin(ry), 0, math.cos(ry)]])
    return (rotation @ np.stack([xs, ys, zs])).T + [x, y, z]


def test_corners_follow_the_devkit_box():
    boxes = np.random.default_rng(0).uniform(
        [-5, 1, 5, 1, 1, 1, -3.1], [5, 2, 40, 5, 2, 2, 3.1], (6, 7))
    corners = box3d_corners(boxes)
    assert corners.shape == (6, 8, 3)
    for box, got in zip(boxes, corners):
        np.testing.assert_allclose(got, _devkit_corners(*box), atol=1e-12)


def test_corner_order_and_heading():
    # ry = pi/2: the front (+x end of the object) points to -z (the camera)
    corners = box3d_corners([[0, 2, 10, 4, 1.5, 2, math.pi / 2]])[0]
    assert np.allclose(corners[:4, 1], 2) and np.allclose(corners[4:, 1], .5)
    np.testing.assert_allclose(corners[[0, 1], 2], 8, atol=1e-12)  # front
    np.testing.assert_allclose(corners[[2, 3], 2], 12, atol=1e-12)


def test_projection_divides_by_projected_depth():
    P = np.array([[700.0, 0, 600, 40], [0, 700, 170, 0.2], [0, 0, 1, 0.003]])
    points = np.array([[1.0, 1.5, 10.0], [-2.0, 0.5, 30.0]])
    pixels = project_to_image(points, P)
    expected = [[(700 * 1 + 600 * 10 + 40) / 10.003,
                 (700 * 1.5 + 170 * 10 + 0.2) / 10.003],
                [(700 * -2 + 600 * 30 + 40) / 30.003,
                 (700 * 0.5 + 170 * 30 + 0.2) / 30.003]]
    np.testing.assert_allclose(pixels, expected, rtol=1e-12)
    assert project_to_image(np.zeros((2, 8, 3)) + [0, 0, 5], P).shape == \
        (2, 8, 2)


@pytest.mark.parametrize('angle,wrapped', [(0, 0), (math.pi, -math.pi),
                                           (-math.pi, -math.pi),
                                           (3 * math.pi / 2, -math.pi / 2),
                                           (-7, -7 + 2 * math.pi)])
def test_wrap_angle(angle, wrapped):
    assert wrap_angle(angle) == pytest.approx(wrapped, abs=1e-12)
