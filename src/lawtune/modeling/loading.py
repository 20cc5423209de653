"""Load a model for inference from a run folder or a plain model folder.

    loaded = load_model("runs/demo")                  # base + the run's best LoRA adapter
    loaded = load_model("runs/demo", base_only=True)   # the same base, same template, no adapter
    loaded = load_model("default")                     # an imported model by name
    loaded.chat.encode_prompt(messages), loaded.model.generate(...)
    chat = open_chat("runs/demo")                      # tokenizer + chat template only (no weights): chat.tokenizer

Never downloads anything: every path must exist locally.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lawtune.errors import LawtuneError
from lawtune.modeling.chat import ChatFormat, resolve_template
from lawtune.modeling.runs import RunInfo, is_run_dir, read_run, resolve_model_path

DTYPES = ("auto", "float32", "bfloat16", "float16")  # auto: bfloat16 where the hardware has it, else float32


def cpu_flags() -> set[str]:
    """The CPU's feature flags (/proc/cpuinfo); empty where there is no such file (not Linux)."""
    try:
        return set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return set()


def bf16_supported() -> bool:
    """bf16 pays off only with hardware bf16: a CUDA GPU that has it, or a CPU with AVX512-BF16/AMX.

    Without it a CPU emulates bf16 matmuls and is slower than float32, so `auto` must not pick it there."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def resolve_dtype(dtype: str) -> str:
    """The dtype weights are loaded in: `auto` → bfloat16 with hardware bf16, else float32; others as given."""
    if dtype not in DTYPES:
        raise LawtuneError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if dtype == "auto":
        return "bfloat16" if bf16_supported() else "float32"
    return dtype


@dataclass
class LoadedModel:
    model: Any  # a transformers causal LM, or a PeftModel wrapping one
    tokenizer: Any
    chat: ChatFormat
    name: str  # what the model is called in reports and in the API
    base_path: Path
    adapter_path: Path | None


def load_tokenizer(path: Path, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_type(model_dir: Path) -> str | None:
    """A model folder's `model_type` (config.json), which picks a shipped chat template; None when unreadable."""
    import json

    try:
        return json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, json.JSONDecodeError):
        return None


def open_chat(spec: str | Path | RunInfo, template: str | None = None, trust_remote_code: bool = False) -> ChatFormat:
    """A run (folder or `RunInfo`), model folder or imported name → its tokenizer and chat template, the one
    way every command opens them. A run's own tokenizer and template (`template` replaces it), so prompts are
    formatted exactly as in training; a model's tokenizer with `template`, else its own or the shipped one."""
    if isinstance(spec, RunInfo) or is_run_dir(Path(spec)):
        run = spec if isinstance(spec, RunInfo) else read_run(spec)
        tokenizer = load_tokenizer(run.tokenizer_dir, trust_remote_code)
        return ChatFormat(tokenizer, template and resolve_template(tokenizer, template) or run.template)
    model_dir = resolve_model_path(spec)
    tokenizer = load_tokenizer(model_dir, trust_remote_code)
    return ChatFormat(tokenizer, resolve_template(tokenizer, template, model_type(model_dir)))


def load_base(path: Path, dtype: str = "float32", trust_remote_code: bool = False) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    dtype = resolve_dtype(dtype)
    if not (path / "config.json").is_file():
        raise LawtuneError(f"{path} is not a Hugging Face model folder (no config.json); import it with `lawtune model import {path}`")
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code
    )
    model.eval()
    return model


def load_model(
    spec: str | Path,
    *,
    base_only: bool = False,
    adapter: str = "best",
    dtype: str = "float32",
    merge: bool = False,
    template: str | None = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Resolve `spec` (run folder, model folder or imported name) into a ready-to-generate model.

    For a run folder, the tokenizer and chat template come from the run, so inference formats prompts
    exactly as training did. `merge=True` folds the LoRA weights into the base for faster generation.
    """
    path = Path(spec)
    if is_run_dir(path):
        run = read_run(path)
        chat = open_chat(run, template, trust_remote_code)
        model, tokenizer = load_base(run.base_model, dtype, trust_remote_code), chat.tokenizer
        if base_only:
            return LoadedModel(model, tokenizer, chat, f"{path.name}:base", run.base_model, None)
        adapter_dir = run.adapter_dir(adapter)
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
        model.eval()
        if merge:
            model = model.merge_and_unload()
        return LoadedModel(model, tokenizer, chat, path.name, run.base_model, adapter_dir)

    model_dir = resolve_model_path(spec)
    chat = open_chat(model_dir, template, trust_remote_code)
    model = load_base(model_dir, dtype, trust_remote_code)
    return LoadedModel(model, chat.tokenizer, chat, model_dir.name, model_dir, None)
