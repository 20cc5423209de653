"""Run folders are portable: moved to another path (or machine) they still load, evaluate and answer."""

from __future__ import annotations

import json
import os
import shutil

from typer.testing import CliRunner

from lawtune.cli import app
from lawtune.fsutil import atomic_dir
from lawtune.modeling.importer import import_model
from lawtune.modeling.loading import load_model
from lawtune.modeling.runs import RUN_INFO, models_dir, read_run


def test_run_json_and_adapter_config_name_the_base_absolutely(tiny_run_dir, tiny_model_dir):
    base = json.loads((tiny_run_dir / RUN_INFO).read_text(encoding="utf-8"))["base_model"]
    assert base["path"] == str(tiny_model_dir.resolve()) and "name" not in base  # not an imported model
    for adapter in ("adapter", "best"):
        config = json.loads((tiny_run_dir / adapter / "adapter_config.json").read_text(encoding="utf-8"))
        assert config["base_model_name_or_path"] == str(tiny_model_dir.resolve())


def test_a_moved_run_evaluates_and_answers_from_another_directory(tiny_run_dir, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere" / "my-run"
    shutil.copytree(tiny_run_dir, moved)
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"conversations": [{"role": "user", "content": "工伤怎么认定？"},
                                                {"role": "assistant", "content": "向社会保险行政部门申请。"}]},
                             ensure_ascii=False) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = CliRunner().invoke(app, ["eval", "my-run", "--data", str(qa), "--no-mcq", "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert (moved / "eval").is_dir()
    result = CliRunner().invoke(app, ["infer", str(moved), "--prompt", "工伤怎么认定？", "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output + repr(result.exception)


def test_a_run_from_another_machine_finds_its_base_by_imported_name(tiny_run_dir, tiny_model_dir, tmp_path):
    import_model(str(tiny_model_dir), name="tiny")
    copied = tmp_path / "copied-run"
    shutil.copytree(tiny_run_dir, copied)
    info = json.loads((copied / RUN_INFO).read_text(encoding="utf-8"))
    info["base_model"].update(path="/home/someone-else/.cache/lawtune/models/tiny", name="tiny")
    (copied / RUN_INFO).write_text(json.dumps(info), encoding="utf-8")
    assert read_run(copied).base_model == models_dir() / "tiny"
    assert load_model(copied).adapter_path == copied / "best"


def test_finished_outputs_are_readable_by_other_users(tiny_run_dir, tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "model") as folder:
            weights = folder / "model.safetensors"
            weights.write_bytes(b"x")
            weights.chmod(0o600)  # what safetensors leaves (and mkdtemp makes the folder 0700)
    finally:
        os.umask(old)
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "model" / "model.safetensors").stat().st_mode & 0o777 == 0o644
    for adapter in ("adapter", "best"):  # the run's adapters too, written the same way
        assert (tiny_run_dir / adapter).stat().st_mode & 0o077 and \
            (tiny_run_dir / adapter / "adapter_model.safetensors").stat().st_mode & 0o044 == 0o044
