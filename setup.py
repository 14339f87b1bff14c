"""Install vitdense and build its compiled ops as ``vitdense._C``.

Environment switches:
  VITDENSE_NO_EXT=1  install without the extension, on purpose;
  FORCE_CUDA=1       build the CUDA kernels even when no GPU is visible
                     (a CUDA toolkit and a CUDA build of torch are needed).
The CUDA kernels, built when CUDA is present, run only with
VITDENSE_CUDA_OPS=1 until they pass their tests on a GPU (vitdense.ops.info()).
A failed extension build fails the install; it is never skipped silently.
Build with ``pip install --no-build-isolation -e .`` so torch is visible.
"""
import glob
import os

from setuptools import find_packages, setup


def read_version():
    scope = {}
    with open(os.path.join('vitdense', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(name):
    path = os.path.join('requirements', name)
    with open(path) as f:
        return [line.strip() for line in f
                if line.strip() and not line.startswith(('#', '-'))]


def extension_modules():
    if os.getenv('VITDENSE_NO_EXT', '0') == '1':
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import (CUDA_HOME, BuildExtension,
                                               CppExtension, CUDAExtension)
    except ImportError as error:
        raise RuntimeError(
            'vitdense builds its ops against torch, which is not importable '
            'here. Install torch first and build with '
            '`pip install --no-build-isolation -e .`, or set VITDENSE_NO_EXT=1 '
            'to install without compiled ops.') from error
    csrc = os.path.join('vitdense', 'ops', 'csrc')
    sources = sorted(glob.glob(os.path.join(csrc, '*.cpp')) +
                     glob.glob(os.path.join(csrc, 'cpu', '*.cpp')))
    if not sources:
        return [], {}
    # No -std flag: torch's BuildExtension adds the standard its headers
    # need (C++17 for torch < 2.10, C++20 after).
    cxx_flags = ['-O3', '-fopenmp']
    define_macros = []
    with_cuda = (os.getenv('FORCE_CUDA', '0') == '1'
                 or torch.cuda.is_available()) and CUDA_HOME is not None
    if os.getenv('FORCE_CUDA', '0') == '1' and (CUDA_HOME is None
                                                or torch.version.cuda is None):
        raise RuntimeError('FORCE_CUDA=1 but no CUDA toolkit or no CUDA '
                           'build of torch was found.')
    if with_cuda:
        sources += sorted(glob.glob(os.path.join(csrc, 'cuda', '*.cu')))
        define_macros.append(('WITH_CUDA', None))
        extension = CUDAExtension(
            'vitdense._C', sources,
            include_dirs=[os.path.abspath(csrc)],
            define_macros=define_macros,
            extra_compile_args={'cxx': cxx_flags,
                                'nvcc': ['-O3', '--use_fast_math']},
            extra_link_args=['-fopenmp'])
    else:
        extension = CppExtension(
            'vitdense._C', sources,
            include_dirs=[os.path.abspath(csrc)],
            define_macros=define_macros,
            extra_compile_args={'cxx': cxx_flags},
            extra_link_args=['-fopenmp'])
    return [extension], {'build_ext': BuildExtension.with_options(
        use_ninja=True)}


ext_modules, cmdclass = extension_modules()

setup(
    name='vitdense',
    version=read_version(),
    description='Dense prediction with vision transformers on OpenMMLab',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'projects',
                                    'docs')),
    include_package_data=True,
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'tests': read_requirements('tests.txt'),
        'optional': read_requirements('optional.txt'),
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
