"""vitdense.utils.enable_cpu_caching_allocator: large CPU tensors reuse
freed blocks instead of being page-faulted anew."""
import subprocess
import sys

import pytest

from vitdense.utils import enable_cpu_caching_allocator

# Faults of the third of three 64 MiB tensors made one after the other
# (glibc maps, and the kernel faults in, a fresh block each time by
# default); then tensors through the cache, oneDNN's raw allocations
# (conv2d), a fork, and small tensors still compute the right values.
PROBE = '''
import os, resource, torch
import torch.nn.functional as F
from vitdense.utils import (cpu_caching_allocator_stats, empty_cpu_cache,
                            enable_cpu_caching_allocator)
enabled = enable_cpu_caching_allocator()
def faults_of_new_tensor():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 * 2**20)
    assert x.sum().item() == 16 * 2**20
    del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_new_tensor()
faults_of_new_tensor()
faults = faults_of_new_tensor()
x = torch.randn(1, 8, 300, 300)
w = torch.randn(8, 8, 3, 3)
for _ in range(3):
    y = F.conv2d(x, w, padding=1)
    assert torch.allclose(y, F.conv2d(x.double(), w.double(),
                                      padding=1).float(), atol=1e-3)
small = torch.arange(100.)
assert small.sum().item() == 4950
pid = os.fork()
if pid == 0:
    os._exit(0 if torch.full((2**20,), 2.).sum().item() == 2**21 else 1)
_, status = os.waitpid(pid, 0)
assert os.WEXITSTATUS(status) == 0
stats = cpu_caching_allocator_stats()
empty_cpu_cache()
print(enabled, faults, stats.get('hits', 0),
      cpu_caching_allocator_stats().get('cached_bytes', 0))
'''


def probe(env_value):
    env = {
        'VITDENSE_CPU_CACHING_ALLOCATOR': env_value,
        'OMP_NUM_THREADS': '1'
    }
    result = subprocess.run([sys.executable, '-c', PROBE],
                            env=env,
                            capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    enabled, faults, hits, cached = result.stdout.split()
    return enabled == 'True', int(faults), int(hits), int(cached)


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='counts page faults with getrusage')
def test_cpu_caching_allocator_reuses_large_blocks():
    enabled, faults, hits, cached = probe('1')
    assert enabled
    assert faults < 1000  # reused: 64 MiB would be 16384 pages
    assert hits >= 2
    assert cached == 0  # after empty_cpu_cache
    enabled, faults, hits, _ = probe('0')
    assert not enabled and hits == 0
    assert faults > 10000  # glibc's default: every page faulted again


def test_cpu_caching_allocator_opt_out_and_bad_limit(monkeypatch):
    monkeypatch.setenv('VITDENSE_CPU_CACHING_ALLOCATOR', '0')
    assert enable_cpu_caching_allocator() is False
    monkeypatch.setenv('VITDENSE_CPU_CACHING_ALLOCATOR', '1')
    with pytest.raises(ValueError, match='max_cached_bytes'):
        enable_cpu_caching_allocator(-1)
