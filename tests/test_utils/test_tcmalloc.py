"""vitdense.utils.preload_tcmalloc: the tools re-run under tcmalloc, so
large CPU tensors reuse freed memory instead of being page-faulted anew."""
import os
import subprocess
import sys

import pytest

from vitdense.utils import find_tcmalloc

# Preload, then the faults of the third of three 64 MiB tensors made one
# after the other (glibc maps, and the kernel faults in, a fresh block each
# time), then conv2d (oneDNN) and a fork still compute the right values.
PROBE = '''
import os, resource, sys
from vitdense.utils import preload_tcmalloc, tcmalloc_loaded
preloaded = preload_tcmalloc()
import torch
import torch.nn.functional as F
def faults_of_new_tensor():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 * 2**20)
    assert x.sum().item() == 16 * 2**20
    del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_new_tensor()
faults_of_new_tensor()
faults = faults_of_new_tensor()
x, w = torch.randn(1, 8, 300, 300), torch.randn(8, 8, 3, 3)
assert torch.allclose(F.conv2d(x, w, padding=1),
                      F.conv2d(x.double(), w.double(), padding=1).float(),
                      atol=1e-3)
pid = os.fork()
if pid == 0:
    os._exit(0 if torch.full((2**20,), 2.).sum().item() == 2**21 else 1)
assert os.WEXITSTATUS(os.waitpid(pid, 0)[1]) == 0
print(preloaded, tcmalloc_loaded(), faults, sys.argv[1:])
'''


def probe(**env):
    env = dict(os.environ, OMP_NUM_THREADS='1', **env)
    env.pop('LD_PRELOAD', None)
    env.pop('VITDENSE_TCMALLOC_PRELOADED', None)
    result = subprocess.run([sys.executable, '-c', PROBE, 'a', 'b'], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    preloaded, loaded, faults, argv = result.stdout.strip().split(' ', 3)
    return preloaded == 'True', loaded == 'True', int(faults), argv


@pytest.mark.skipif(find_tcmalloc() is None or
                    not sys.platform.startswith('linux'),
                    reason='tcmalloc is not installed (libtcmalloc-minimal4)')
def test_preload_reruns_the_command_under_tcmalloc_without_page_faults():
    preloaded, loaded, faults, argv = probe()
    assert preloaded and loaded
    assert argv == "['a', 'b']"  # the same command line, re-run
    assert faults < 1000
    preloaded, loaded, glibc_faults, _ = probe(VITDENSE_TCMALLOC='0')
    assert not preloaded and not loaded
    assert glibc_faults > 10000  # 64 MiB = 16384 pages, faulted anew


def test_without_tcmalloc_the_tools_keep_glibc_and_say_how_to_get_it(
        monkeypatch, capsys):
    from vitdense.utils import tcmalloc
    monkeypatch.delenv('VITDENSE_TCMALLOC', raising=False)
    monkeypatch.setattr(tcmalloc, 'find_tcmalloc', lambda: None)
    monkeypatch.setattr(tcmalloc, 'tcmalloc_loaded', lambda: False)
    monkeypatch.setattr(tcmalloc.os, 'execve', pytest.fail)
    assert tcmalloc.preload_tcmalloc() is False
    if sys.platform.startswith('linux'):
        assert 'libtcmalloc-minimal4' in capsys.readouterr().err
