"""mmcv 2.1.0's multi-scale deformable attention CUDA kernel, compiled
just in time from mmcv's source distribution: the baseline that
``tools/device/cuda_check.sh`` measures vitdense's kernel against on a GPU
machine without mmcv (a full mmcv build takes ~15 minutes; this compiles
one ``.cu`` file).

Only the MSDA launcher (``mmcv/ops/csrc/pytorch/cuda/ms_deform_attn_cuda.cu``)
and the headers it includes are extracted from the sdist, into the build
directory; ``mmcv_msda_binding.cpp`` binds them. torch >= 2.0 no longer
ships ``THC/THCAtomics.cuh``, which that file includes: a one-line header
forwarding to ``ATen/cuda/Atomic.cuh`` (the same ``atomicAdd`` overloads)
stands in for it.

Example::

    python tools/device/mmcv_msda.py .whl/mmcv-2.1.0.tar.gz build/mmcv_msda
"""
import argparse
import os
import tarfile
from pathlib import Path
from typing import Callable

import torch

CSRC = 'mmcv/ops/csrc'
MEMBERS = ('common/pytorch_cuda_helper.hpp',
           'common/cuda/common_cuda_helper.hpp',
           'common/cuda/ms_deform_attn_cuda_kernel.cuh',
           'pytorch/cuda/ms_deform_attn_cuda.cu')
BINDING = Path(__file__).with_name('mmcv_msda_binding.cpp')


def extract(sdist: str, build_dir: Path) -> Path:
    """Extract the MSDA sources of ``sdist`` under ``build_dir``; returns
    the extracted ``csrc`` folder."""
    with tarfile.open(sdist) as tar:
        names = {Path(name).relative_to(Path(name).parts[0]).as_posix(): name
                 for name in tar.getnames() if '/' in name}
        missing = [m for m in MEMBERS if f'{CSRC}/{m}' not in names]
        if missing:
            raise FileNotFoundError(f'{sdist} is not mmcv 2.1.0\'s sdist: '
                                    f'missing {missing}')
        for member in MEMBERS:
            data = tar.extractfile(names[f'{CSRC}/{member}']).read()
            target = build_dir / 'csrc' / member
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    shim = build_dir / 'shim' / 'THC' / 'THCAtomics.cuh'
    shim.parent.mkdir(parents=True, exist_ok=True)
    shim.write_text('#pragma once\n#include <ATen/cuda/Atomic.cuh>\n')
    return build_dir / 'csrc'


def build(sdist: str, build_dir: str, verbose: bool = False):
    """Compile and import the baseline extension (``forward``,
    ``backward``)."""
    from torch.utils.cpp_extension import load
    build_path = Path(build_dir).resolve()
    csrc = extract(sdist, build_path)
    (build_path / 'ext').mkdir(parents=True, exist_ok=True)
    return load(
        name='mmcv_msda_baseline',
        sources=[
            str(BINDING),
            str(csrc / 'pytorch/cuda/ms_deform_attn_cuda.cu')
        ],
        extra_include_paths=[
            str(csrc / 'common'), str(csrc / 'common/cuda'),
            str(build_path / 'shim')
        ],
        extra_cuda_cflags=['-O3'],
        build_directory=str(build_path / 'ext'),
        verbose=verbose)


def mmcv_msda_function(ext) -> Callable:
    """An autograd function over the baseline with mmcv's calling
    convention ``(value, spatial_shapes, level_start_index, locations,
    weights)`` and im2col_step 64, as mmcv's module uses it."""

    class MMCVMSDA(torch.autograd.Function):

        @staticmethod
        def forward(ctx, value, shapes, start, loc, weights):
            ctx.save_for_backward(value, shapes, start, loc, weights)
            return ext.forward(value, shapes, start, loc, weights, 64)

        @staticmethod
        def backward(ctx, grad):
            grad_value, grad_loc, grad_attn = ext.backward(
                *ctx.saved_tensors, grad.contiguous(), 64)
            return grad_value, None, None, grad_loc, grad_attn

    return MMCVMSDA.apply


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('sdist', help='mmcv-2.1.0.tar.gz')
    parser.add_argument('build_dir')
    args = parser.parse_args()
    os.environ.setdefault('MAX_JOBS', str(os.cpu_count() or 1))
    ext = build(args.sdist, args.build_dir, verbose=True)
    print(f'built {ext.__file__}')


if __name__ == '__main__':
    main()
