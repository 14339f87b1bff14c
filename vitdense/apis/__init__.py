from .inference import (VitdenseDetInferencer, VitdenseSegInferencer,
                        init_inferencer)
from .video import VIDEO_EXTENSIONS, inference_video

__all__ = ['VitdenseDetInferencer', 'VitdenseSegInferencer', 'init_inferencer',
           'inference_video', 'VIDEO_EXTENSIONS']
