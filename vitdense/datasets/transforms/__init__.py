from .loading import LoadValidatedSegAnnotations
from .resize import ResizeShortestEdgeTrunc

__all__ = ['LoadValidatedSegAnnotations', 'ResizeShortestEdgeTrunc']
