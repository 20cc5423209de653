"""What every lawtune process sets up before it imports the libraries: the `lawtune` command and the fresh
process each demo step runs in (`lawtune.phase_process`) call `configure()` first."""

from __future__ import annotations

import os
import warnings


def configure() -> None:
    # lawtune never downloads: a model name that is not a local folder (PEFT looks up an adapter's base by the
    # imported model's name when it saves) must not turn into a Hugging Face Hub request. Set before
    # huggingface_hub is imported (it reads the variable once); a user may still export HF_HUB_OFFLINE=0.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # numpy's BLAS does only retrieval's small products here (one 64k × 384 matrix by a vector a query). A second
    # OpenBLAS thread saves no wall time on them but spins after each, doubling a query's CPU (69.8 vs 137–154 ms
    # median; docs/knowledge-base.md, "Session 36") and taking a core from generation in a server. Torch keeps its
    # own threads. Set before numpy is imported (OpenBLAS reads it once); a user's own setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # Library-internal deprecations users cannot act on (PEFT reads transformers' renamed property).
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
