"""The package works installed from its wheel, outside the checkout (issue 13 item 3).

Builds the wheel from a copy of the sources, installs it into a fresh virtualenv in a temp folder, and runs
from there, in a directory that is not the checkout, the commands that read bundled files: `lawtune demo
--quick` (the sample CSV and configs/demo.yaml) and `lawtune eval` on the bundled MCQ and LawBench sets.
The fresh venv gets the already-installed dependencies (torch, transformers, ...) through a .pth line to
this venv's site-packages, which does not process this venv's editable-install hook: `import lawtune` can
only find the wheel's copy. Nothing is downloaded (pip builds without isolation, installs with --no-deps).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtualenv with lawtune installed from its wheel; returns its bin/ folder."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copy(REPO / "README.md", source)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(source)],
                   check=True, cwd=root)
    wheel = next((root / "dist").glob("lawtune-*.whl"))

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "lawtune_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    subprocess.run([*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", str(wheel)],
                   check=True, cwd=root)
    return venv / "bin"


def _run(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ""}
    return subprocess.run([str(bin_dir / "lawtune"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_wheel_ships_the_bundled_files_and_converters_and_imports_from_its_own_copy(installed, tmp_path):
    probe = subprocess.run(
        [str(installed / "python"), "-c",
         "import lawtune, lawtune.bundled as b; print(lawtune.__file__); "
         "print(b.sample_csv().is_file(), b.config('demo').is_file(), (b.benchmarks_dir() / 'jecqa_single.jsonl').is_file()); "
         "from lawtune.export.gguf import VENDORED as v; "
         "print((v / 'convert_hf_to_gguf.py').is_file(), (v / 'gguf-py' / 'gguf' / 'gguf_writer.py').is_file(), "
         "(v / 'conversion' / 'gemma.py').is_file(), (v / 'LICENSE').is_file())"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""}, capture_output=True, text=True, check=True)
    location, found, converters = probe.stdout.splitlines()
    assert str(installed.parent) in location and str(REPO) not in location
    assert found == "True True True"
    assert converters == "True True True True"  # llama.cpp's vendored converters travel in the wheel


def test_demo_quick_and_eval_on_bundled_sets_run_from_the_installed_wheel(installed, tiny_model_dir, tmp_path):
    work = tmp_path / "elsewhere"  # not the checkout: no data/ or configs/ to fall back on
    work.mkdir()
    demo = _run(installed, work, "demo", "--quick", "--model", str(tiny_model_dir), "--max-steps", "1", "--out", "demo")
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert (work / "demo" / "report" / "report.md").is_file()

    evaluation = _run(installed, work, "eval", "demo/run", "--data", "lawbench_3-8", "--limit", "2",
                      "--max-new-tokens", "4", "--mcq", "jecqa_single", "--mcq", "lawbench_1-2", "--mcq-limit", "2",
                      "--out", "eval")
    assert evaluation.returncode == 0, evaluation.stdout[-2000:] + evaluation.stderr[-2000:]
    record = json.loads((work / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert record["data"]["count"] == 2 and set(record["mcq"]) == {"jecqa_single", "lawbench_1-2"}
