"""Run the tools with tcmalloc instead of glibc's allocator.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with
a fresh ``mmap`` and unmaps it on free, so the kernel page-faults and zeroes
each large tensor again every time one is created: a CPU DETR training step
faults in several GB this way. tcmalloc (Debian's ``libtcmalloc-minimal4``,
``LD_PRELOAD``) keeps freed memory for reuse. Measured against glibc, its
tuning variables, jemalloc and vitdense's former caching allocator by
``tools/analysis_tools/benchmark_allocators.py`` it was the fastest by a wide
margin (``docs/benchmarks.md``), so ``tools/train.py`` and ``tools/test.py``
call :func:`preload_tcmalloc` first. ``VITDENSE_TCMALLOC=0`` opts out.
"""
import os
import sys
from typing import Optional

__all__ = ['find_tcmalloc', 'tcmalloc_loaded', 'preload_tcmalloc']

#: library names, most preferred first
TCMALLOC_LIBRARIES = ('libtcmalloc_minimal.so.4', 'libtcmalloc.so.4')
_LIBRARY_DIRS = ('/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu',
                 '/usr/lib64', '/usr/lib', '/usr/local/lib')
_REEXEC_MARK = 'VITDENSE_TCMALLOC_PRELOADED'


def find_tcmalloc() -> Optional[str]:
    """The path of an installed tcmalloc, or None."""
    for name in TCMALLOC_LIBRARIES:
        for folder in _LIBRARY_DIRS:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
    return None


def tcmalloc_loaded() -> bool:
    """Whether tcmalloc is mapped into this process."""
    try:
        with open('/proc/self/maps') as f:
            return 'libtcmalloc' in f.read()
    except OSError:
        return False


def preload_tcmalloc() -> bool:
    """Re-run this command with tcmalloc preloaded, once; returns whether
    tcmalloc is this process's allocator. Does nothing when opted out
    (``VITDENSE_TCMALLOC=0``), when tcmalloc is not installed (a hint is
    printed), when it is loaded already, or off Linux."""
    if os.environ.get('VITDENSE_TCMALLOC', '1') == '0':
        return False
    if tcmalloc_loaded():
        return True
    library = find_tcmalloc()
    if library is None or not sys.platform.startswith('linux'):
        if sys.platform.startswith('linux'):
            print('vitdense: tcmalloc not found; large CPU tensors are '
                  'page-faulted anew every step (apt-get install '
                  'libtcmalloc-minimal4 makes CPU training faster)',
                  file=sys.stderr)
        return False
    if os.environ.get(_REEXEC_MARK) == '1':
        return False  # preloaded but refused by the loader: keep glibc
    preload = ':'.join(p for p in (library, os.environ.get('LD_PRELOAD'))
                       if p)
    env = dict(os.environ, LD_PRELOAD=preload, **{_REEXEC_MARK: '1'})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)
