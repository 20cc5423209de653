"""load_model on a run folder and a plain model folder (tiny model)."""

from __future__ import annotations

import pytest

from lawtune.errors import LawtuneError
from lawtune.modeling.loading import load_model


def test_run_folder_loads_base_plus_adapter(tiny_run_dir):
    loaded = load_model(tiny_run_dir)
    assert loaded.adapter_path == tiny_run_dir / "best"
    assert loaded.chat.end_of_turn_text == "<end_of_turn>"
    base = load_model(tiny_run_dir, base_only=True)
    assert base.adapter_path is None
    ids = loaded.chat.encode_prompt([{"role": "user", "content": "劳动合同到期不续签有补偿吗？"}])
    assert ids == base.chat.encode_prompt([{"role": "user", "content": "劳动合同到期不续签有补偿吗？"}])


def test_model_folder_without_template_uses_the_family_default(tiny_model_dir):
    loaded = load_model(tiny_model_dir)
    assert loaded.adapter_path is None
    assert "<start_of_turn>" in loaded.chat.template


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(LawtuneError, match="lawtune model import"):
        load_model("default")
    with pytest.raises(LawtuneError, match="not found"):
        load_model(tmp_path / "nope")


def test_auto_dtype_follows_the_hardware(tiny_model_dir):
    """`auto` (serve's default) loads bfloat16 exactly where the CPU/GPU has bf16, float32 elsewhere."""
    import torch

    from lawtune.modeling.loading import bf16_supported, resolve_dtype

    expected = "bfloat16" if bf16_supported() else "float32"
    assert resolve_dtype("auto") == expected
    assert resolve_dtype("float32") == "float32"
    loaded = load_model(tiny_model_dir, dtype="auto")
    assert {p.dtype for p in loaded.model.parameters()} == {getattr(torch, expected)}
    with pytest.raises(LawtuneError, match="int3"):
        resolve_dtype("int3")


def test_served_model_reports_its_resolved_dtype(tiny_run_dir):
    """The serve default is auto; the engine resolves it before loading and keeps the answer for the logs."""
    from lawtune.modeling.loading import resolve_dtype
    from lawtune.serving.engines.local import LocalEngine
    from lawtune.serving.settings import ServeSettings

    assert ServeSettings(model=str(tiny_run_dir)).dtype == "auto"
    engine = LocalEngine(tiny_run_dir, max_batch_size=1)
    engine._load()  # what start() runs in a thread, without the decode worker
    assert engine.dtype == resolve_dtype("auto")
    assert str(next(engine.model.parameters()).dtype) == f"torch.{engine.dtype}"


def test_the_command_line_never_asks_the_hub():
    """PEFT looks an adapter's base up by name when it saves; under `lawtune` that must stay offline."""
    import subprocess
    import sys

    code = "import lawtune.cli, huggingface_hub.constants as c; print(c.HF_HUB_OFFLINE)"
    env = {k: v for k, v in __import__("os").environ.items() if k != "HF_HUB_OFFLINE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "True"


def test_the_command_line_sets_one_blas_thread_before_numpy_loads():
    """numpy's second OpenBLAS thread only spins on retrieval's products (docs/knowledge-base.md, "Session 36"):
    `lawtune` asks for one before anything has loaded numpy, and a user's own setting wins."""
    import os
    import subprocess
    import sys

    code = "import os, sys, lawtune.cli; print(os.environ.get('OPENBLAS_NUM_THREADS'), 'numpy' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["1", "False"]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "OPENBLAS_NUM_THREADS": "2"}, check=True)
    assert out.stdout.split()[0] == "2"
