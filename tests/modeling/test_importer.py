"""`lawtune model import`: local HF folders into the cache (atomic, reused), and clear errors; never a download."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from lawtune.errors import LawtuneError
from lawtune.modeling.importer import import_model
from lawtune.modeling.loading import load_model
from lawtune.modeling.runs import models_dir


def test_local_folder_is_imported_reused_and_loadable(tiny_model_dir):
    path = import_model(str(tiny_model_dir), name="tiny")
    assert path == models_dir() / "tiny"
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert json.loads((path / "lawtune_import.json").read_text())["kind"] == "hf-folder"
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    (path / "marker").write_text("kept")
    assert import_model(str(tiny_model_dir), name="tiny") == path  # reused, not rewritten
    assert (path / "marker").is_file()
    import_model(str(tiny_model_dir), name="tiny", force=True)  # replaced in one rename
    assert not (path / "marker").exists() and (path / "model.safetensors").stat().st_mtime_ns >= stamp
    assert not [p for p in models_dir().iterdir() if p.name.startswith(".")]  # no temporary folder left
    loaded = load_model("tiny")
    assert loaded.base_path == path


def test_remote_code_needs_the_explicit_flag(tiny_model_dir, tmp_path):
    remote = tmp_path / "chatglm3-like"
    shutil.copytree(tiny_model_dir, remote)
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration"}
    (remote / "config.json").write_text(json.dumps(config))
    with pytest.raises(LawtuneError, match="--trust-remote-code"):
        import_model(str(remote))
    assert import_model(str(remote), trust_remote_code=True).name == "chatglm3-like"


def test_missing_or_wrong_sources_are_clear_errors(tmp_path):
    with pytest.raises(LawtuneError, match="not found; lawtune never downloads models"):
        import_model(str(tmp_path / "chatglm3-6b"))
    (tmp_path / "weights.bin.txt").write_text("x")
    with pytest.raises(LawtuneError, match="neither a .gguf file nor a Hugging Face model folder"):
        import_model(str(tmp_path / "weights.bin.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LawtuneError, match="no config.json"):
        import_model(str(tmp_path / "empty"))
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(LawtuneError, match="no weight files"):
        import_model(str(tmp_path / "empty"))


def test_cli_errors_are_one_line_and_help_has_examples(tmp_path):
    result = subprocess.run([sys.executable, "-m", "lawtune.cli", "model", "import", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    for command in (["model", "import", "--help"], ["train", "--help"]):
        result = subprocess.run([sys.executable, "-m", "lawtune.cli", *command], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "Example" in result.stdout
