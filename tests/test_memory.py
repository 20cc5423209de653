"""lawtune.memory: the RSS now, the process peak, and each phase's own peak."""

from __future__ import annotations

import sys

import pytest

from lawtune.memory import Phases, peak_rss_mib, release_memory, rss_mib

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self is Linux's")


def _touch(mib: int) -> bytearray:
    block = bytearray(mib * 2**20)
    for offset in range(0, len(block), 4096):  # resident only once touched
        block[offset] = 1
    return block


@linux
def test_rss_and_peak_are_measured():
    now = rss_mib()
    assert now is not None and now > 1
    assert peak_rss_mib() >= now - 1


@linux
def test_each_phase_has_its_own_peak_and_the_process_keeps_the_highest():
    phases = Phases()
    with phases("big"):
        block = _touch(200)
        del block
    with phases("small"):
        block = _touch(8)
        del block
    big, small = phases.done
    assert big.own_peak and small.own_peak  # /proc/self/clear_refs is writable here
    assert big.peak_mib >= big.start_mib + 190
    assert small.peak_mib < big.peak_mib - 150  # the big block's peak did not leak into the next phase
    assert peak_rss_mib() >= big.peak_mib  # the reset did not lose the process peak
    assert [r["name"] for r in phases.records()] == ["big", "small"]
    assert phases.lines()[0].startswith("big: peak ") and phases.lines()[-1].startswith("process peak ")


def test_release_memory_runs_anywhere():
    release_memory()


@linux
def test_trim_heap_gives_back_the_pages_of_blocks_freed_between_live_ones():
    import ctypes.util

    from lawtune.memory import trim_heap

    if not ctypes.util.find_library("c") or "glibc" not in " ".join(__import__("platform").libc_ver()):
        pytest.skip("malloc_trim is glibc's")
    # 16 KiB blocks (kept in the heap, under glibc's mmap threshold) with a small live block after each: freeing
    # the big ones leaves holes that free() alone does not give back, as a training step's activations do
    big, keep = [], []
    for _ in range(12_000):
        big.append(bytearray(b"x" * 16384))
        keep.append(bytearray(b"y" * 1024))
    before_free = rss_mib()
    big.clear()
    held = rss_mib()
    trim_heap()
    after = rss_mib()
    assert before_free - held < 60  # free() kept most of the ~190 MiB
    assert held - after > 100  # the trim gave most of it back
    assert len(keep) == 12_000


@linux
def test_page_out_drops_a_mapped_tensor_from_the_rss_and_keeps_its_values(tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from lawtune.memory import page_out

    def file_rss_mib():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("RssFile")) / 1024

    save_file({"w": torch.randn(2048, 4096)}, str(tmp_path / "w.safetensors"))  # 32 MiB
    with safe_open(str(tmp_path / "w.safetensors"), "pt") as handle:
        weight = handle.get_tensor("w")  # a view of the mapped file, as transformers loads weights
    expected = weight.clone()
    assert page_out(expected) == 0  # anonymous memory: nothing to give back to a file
    touched = float(weight.sum())
    before = file_rss_mib()
    if page_out(weight) == 0:
        pytest.skip("this kernel has no MADV_PAGEOUT")
    assert before - file_rss_mib() > 24
    assert torch.equal(weight, expected) and float(weight.sum()) == touched



_HEAP_PROBE = """
import sys
from lawtune.memory import rss_mib, tune_heap
def touch(size):
    block = bytearray(size)
    for offset in range(0, size, 4096):
        block[offset] = 1
    return block
touch(24 << 20)  # freed: glibc's own threshold rises to 24 MiB, so 2 MiB blocks would come from the heap
if sys.argv[1] == "tuned":
    assert tune_heap()
big, keep = [], []
for _ in range(64):
    big.append(touch(2 << 20))  # twice the 1 MiB threshold the test sets
    keep.append(touch(4096))  # a live block after each big one, as gradients and Python objects are
held = rss_mib()
big.clear()  # no trim
print(held - rss_mib())
"""


@linux
@pytest.mark.parametrize("heap", ["default", "tuned"])
def test_tune_heap_gives_a_freed_big_block_back_at_once(heap):
    """In a fresh process, as the `lawtune` command sets it at its start: glibc reuses free heap memory before it
    asks the OS for more, so the threshold counts from the moment it is set."""
    import ctypes.util
    import os
    import subprocess

    if not ctypes.util.find_library("c") or "glibc" not in " ".join(__import__("platform").libc_ver()):
        pytest.skip("mallopt is glibc's")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("LAWTUNE_MMAP_THRESHOLD_MIB", None)
    if heap == "tuned":
        env["LAWTUNE_MMAP_THRESHOLD_MIB"] = "1"
    given_back = float(subprocess.run([sys.executable, "-c", _HEAP_PROBE, heap], env=env, check=True,
                                      capture_output=True, text=True).stdout)
    if heap == "tuned":
        assert given_back > 100  # all 128 MiB, each block had pages of its own
    else:
        assert given_back < 30  # glibc kept them: what the mmap threshold is for


def test_tune_heap_is_switched_off_or_refused_by_its_variable(monkeypatch):
    from lawtune.errors import LawtuneError
    from lawtune.memory import THRESHOLD_VARIABLE, tune_heap

    monkeypatch.delenv(THRESHOLD_VARIABLE, raising=False)
    assert tune_heap() is False  # the default: left alone
    monkeypatch.setenv(THRESHOLD_VARIABLE, "0")
    assert tune_heap() is False  # left alone
    for bad in ("1.5", "64", "lots"):
        monkeypatch.setenv(THRESHOLD_VARIABLE, bad)
        with pytest.raises(LawtuneError, match=THRESHOLD_VARIABLE):
            tune_heap()
