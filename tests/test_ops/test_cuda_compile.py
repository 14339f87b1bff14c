"""Compile-only checks of CUDA sources on any machine with ``nvcc``, GPU
or not: vitdense's ``.cu`` files (so a syntax or template error cannot land
silently) and, when its sdist is in ``.whl/``, the mmcv 2.1.0 MSDA kernel
that ``tools/device/cuda_check.sh`` builds as the baseline.

Files are compiled with setup.py's CUDAExtension flags against the
installed torch's headers, to PTX only (the front end and template
instantiation are what can fail). Stand-ins, written to a temporary include
directory, cover what a CPU-only torch wheel and a bare nvcc lack: the one
CMake-generated c10 CUDA header, and (for mmcv, which includes
``ATen/cuda/CUDAContext.h``, whose cuBLAS/cuSPARSE/cuSOLVER headers are
not part of nvcc) the two declarations of that header mmcv uses.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from torch.utils.cpp_extension import include_paths

REPO = Path(__file__).resolve().parents[2]
CSRC = REPO / 'vitdense' / 'ops' / 'csrc'
MMCV_SDIST = REPO / '.whl' / 'mmcv-2.1.0.tar.gz'
NVCC = shutil.which('nvcc') or next(
    (str(p) for p in sorted(Path('/usr/local').glob('cuda*/bin/nvcc'))), None)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NVCC is None, reason='needs nvcc (a CUDA toolkit)')
]
CMAKE_MACROS = '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n'
CUDA_CONTEXT = '''#pragma once
#include <ATen/Context.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
namespace at::cuda {
using c10::cuda::getCurrentCUDAStream;
cudaDeviceProp *getDeviceProperties(c10::DeviceIndex device);
}  // namespace at::cuda
'''


def stand_ins(root: Path, cuda_context: bool) -> Path:
    """Headers the installed torch / nvcc lack, under ``root``."""
    torch_include = Path(include_paths()[0])
    header = Path('c10/cuda/impl/cuda_cmake_macros.h')
    files = {} if (torch_include / header).exists() else {
        header: CMAKE_MACROS}
    if cuda_context and not any(
            (Path(p) / 'cusparse.h').exists()
            for p in (Path(NVCC).parents[1] / 'include', )):
        files[Path('ATen/cuda/CUDAContext.h')] = CUDA_CONTEXT
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def nvcc(source: Path, includes: list, out: Path) -> tuple:
    newer = torch.torch_version.TorchVersion(torch.__version__) >= '2.10'
    command = [
        NVCC, '-c', f'-std={"c++20" if newer else "c++17"}', '-O0',
        '--expt-relaxed-constexpr', '-gencode',
        'arch=compute_90,code=compute_90', '-DWITH_CUDA',
        '-DTORCH_EXTENSION_NAME=_C', '-D__CUDA_NO_HALF_OPERATORS__',
        '-D__CUDA_NO_HALF_CONVERSIONS__', '-D__CUDA_NO_BFLOAT16_CONVERSIONS__',
        '-D__CUDA_NO_HALF2_OPERATORS__',
        *(f'-I{path}' for path in [*includes, *include_paths()]),
        f'-I{sysconfig.get_paths()["include"]}', str(source), '-o', str(out)
    ]
    return source, subprocess.run(command, capture_output=True, text=True)


def assert_compiled(results) -> None:
    failures = [f'{source.name}:\n{result.stderr[-3000:]}'
                for source, result in results if result.returncode != 0]
    assert not failures, 'nvcc failed on ' + '\n'.join(failures)


def test_vitdense_cuda_sources_compile(tmp_path):
    sources = sorted((CSRC / 'cuda').glob('*.cu'))
    assert sources, f'no .cu files under {CSRC / "cuda"}'
    includes = [CSRC, stand_ins(tmp_path / 'include', cuda_context=False)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        assert_compiled(
            pool.map(lambda s: nvcc(s, includes, tmp_path / f'{s.stem}.o'),
                     sources))


@pytest.mark.skipif(not MMCV_SDIST.exists(), reason=f'needs {MMCV_SDIST}')
def test_mmcv_baseline_compiles(tmp_path):
    sys.path.insert(0, str(REPO / 'tools' / 'device'))
    try:
        import mmcv_msda
    finally:
        sys.path.pop(0)
    csrc = mmcv_msda.extract(str(MMCV_SDIST), tmp_path / 'mmcv')
    includes = [
        csrc / 'common', csrc / 'common' / 'cuda', tmp_path / 'mmcv' / 'shim',
        stand_ins(tmp_path / 'include', cuda_context=True)
    ]
    assert_compiled([
        nvcc(csrc / 'pytorch/cuda/ms_deform_attn_cuda.cu', includes,
             tmp_path / 'mmcv.o')
    ])
