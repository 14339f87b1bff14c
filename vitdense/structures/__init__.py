from .box3d import box3d_corners, project_to_image, wrap_angle

__all__ = ['box3d_corners', 'project_to_image', 'wrap_angle']
