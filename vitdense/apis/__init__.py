from .inference import (VitdenseDetInferencer, VitdenseSegInferencer,
                        init_inferencer)

__all__ = ['VitdenseDetInferencer', 'VitdenseSegInferencer', 'init_inferencer']
