"""`LlamaCppEngine`: the local engine's scheduling on llama.cpp's quantized forward pass (`serve --engine llama.cpp`).

    engine = LlamaCppEngine("runs/demo", quant="Q8_0")   # the run's merged model as a GGUF, converted once
    engine = LlamaCppEngine("default")                   # a base imported from a GGUF runs that very file

Everything above the forward pass is the torch engine's (`LocalEngine`): admission, deadlines, cancellation,
the decoding policy and repetition stop, stop strings, logprobs, response_format, the same prompts (the
run's own chat template and tokenizer: the GGUF's vocabulary is the same). Only the batch differs: a
`LlamaCppBatch` instead of a `DecodeBatch`.

The GGUF of a run is its merged model (`lawtune export --to gguf`, quantized to `quant`), cached under
~/.cache/lawtune/serve-gguf by the adapter's hash: the merged file keeps the adapter's trained token rows
(the end-of-turn row), which a GGUF LoRA cannot carry. llama.cpp applies one adapter set per context, so
this engine serves one model: no `--lora-modules` and no `RUN:base` beside the run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lawtune.errors import LawtuneError
from lawtune.modeling.decoding import DecodingPolicy
from lawtune.serving.engines.local import LocalEngine, _Served

log = logging.getLogger("lawtune.serving")
DEFAULT_CONTEXT = 4096  # tokens reserved per sequence when --max-context is not set
FLOAT_TYPES = ("f16", "f32")  # unquantized GGUFs (f32: the same greedy tokens as torch in float32)


class LlamaCppEngine(LocalEngine):
    def __init__(self, spec: str | Path, *, name: str | None = None, max_batch_size: int = 8, adapter: str = "best",
                 max_context: int | None = None, decoding: DecodingPolicy | None = None, quant: str = "Q8_0",
                 threads: int | None = None, lora_modules: dict[str, str] | None = None):
        if lora_modules:
            raise LawtuneError("--lora-modules needs the torch engine: llama.cpp applies one adapter per context; "
                               "serve each run from its own `lawtune serve --engine llama.cpp`, or drop --engine")
        super().__init__(spec, name=name, max_batch_size=max_batch_size, adapter=adapter, max_context=max_context,
                         decoding=decoding, serve_base=False)
        self.quant, self.threads = quant, threads
        self.dtype = f"llama.cpp {quant}"
        self.gguf: Path | None = None

    def _load(self) -> None:
        from lawtune.modeling.loading import open_chat
        from lawtune.modeling.runs import is_run_dir, read_run, resolve_model_path
        from lawtune.serving.engines.llama_batch import LlamaCppBatch

        path = Path(self.spec)
        if is_run_dir(path):
            run = read_run(path)
            chat = open_chat(run)
            self.gguf, served_id, root = run_gguf(path, self.adapter, self.quant), self.name or path.name, run.adapter_dir(self.adapter)
        else:
            base = resolve_model_path(self.spec)
            chat = open_chat(base)
            self.gguf, served_id, root = base_gguf(base, self.quant), self.name or base.name, base
        context = self.max_context or DEFAULT_CONTEXT
        self.batch = LlamaCppBatch(self.gguf, max_sequences=self.max_batch_size, context=context, threads=self.threads)
        self.max_context = min(context, self.batch.context_train)
        self._served[served_id] = _Served(None, chat, root=str(root))
        self.model_ids = list(self._served)
        log.info("llama.cpp engine: %s, %d sequences × %d tokens", self.gguf, self.max_batch_size, self.max_context)

    async def stop(self) -> None:
        await super().stop()
        if self.batch is not None:
            self.batch.close()

    def context_length(self, model: str) -> int | None:
        return self.max_context

    def model_info(self, model: str) -> dict[str, Any]:
        return {"root": self._served[model].root, "max_model_len": self.max_context, "gguf": str(self.gguf)}

    def vocab_size(self) -> int:
        return self.batch.vocab_size


def gguf_name(quant: str) -> str:
    """The file a quantization (Q8_0, Q4_K_M, …) or float type (f16, f32) is served from."""
    return f"model-{quant}.gguf" if quant in FLOAT_TYPES else f"model-{quant.upper()}.gguf"


def run_gguf(run_dir: Path, adapter: str, quant: str) -> Path:
    """The run's merged model as a GGUF at `quant`: exported once (a minute or so), then reused by hash."""
    from lawtune.export.export import run as export
    from lawtune.fsutil import sha256_file
    from lawtune.modeling.runs import lawtune_home, read_run

    adapter_dir = read_run(run_dir).adapter_dir(adapter)
    key = sha256_file(adapter_dir / "adapter_model.safetensors")[:16]
    folder = lawtune_home() / "serve-gguf" / f"{run_dir.name}-{key}-{quant}"
    if not (folder / gguf_name(quant)).is_file():
        log.warning("converting %s to a %s GGUF for llama.cpp (once; cached in %s)", run_dir, quant, folder)
        floats = quant in FLOAT_TYPES
        export(run_dir, "gguf", folder, adapter=adapter, dtype=quant if floats else "f16",
               quant="none" if floats else quant, force=True, say=log.info)
        if not floats:
            (folder / "model-f16.gguf").unlink(missing_ok=True)  # only the quantized file is served
    return folder / gguf_name(quant)


def base_gguf(base: Path, quant: str) -> Path:
    """A base model's GGUF: the file it was imported from (the default model's Q4_K_M, as llama.cpp users run
    it), else its conversion at `quant`, made once."""
    from lawtune.export import gguf as g
    from lawtune.fsutil import sha256_tree
    from lawtune.modeling.runs import lawtune_home

    original = g.original_gguf(base, lawtune_home() / "gguf")
    if original is not None:
        return original
    folder = lawtune_home() / "serve-gguf" / f"{base.name}-{sha256_tree(base)[:16]}-{quant}"
    if not (folder / gguf_name(quant)).is_file():
        from lawtune.fsutil import atomic_dir

        log.warning("converting %s to a %s GGUF for llama.cpp (once; cached in %s)", base, quant, folder)
        with atomic_dir(folder) as tmp:
            floats = quant in FLOAT_TYPES
            float_file = g.convert_model(base, tmp / gguf_name(quant if floats else "f16"), quant if floats else "f16")
            if not floats:
                g.quantize(float_file, tmp / gguf_name(quant), quant.upper())
                float_file.unlink()
    return folder / gguf_name(quant)
