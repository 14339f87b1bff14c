from .formatting import PackClsInputs
from .loading import (LoadValidatedPanopticAnnotations,
                      LoadValidatedSegAnnotations)
from .mono3d import (FilterMono3DAnnotations, LoadMono3DAnnotations,
                     Mono3DAffine, Mono3DRandomFlip, PackMono3DInputs)
from .resize import ResizeShortestEdgeTrunc

__all__ = [
    'LoadValidatedSegAnnotations', 'LoadValidatedPanopticAnnotations',
    'ResizeShortestEdgeTrunc', 'LoadMono3DAnnotations', 'Mono3DRandomFlip',
    'Mono3DAffine', 'FilterMono3DAnnotations', 'PackMono3DInputs',
    'PackClsInputs'
]
