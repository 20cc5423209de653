"""`lawtune export RUN --to FORMAT -o DIR`: hand the tuned model to the engines people already run.

    lawtune export runs/demo --to merged -o out/export/merged      # HF folder: transformers, pipeline, vLLM
    lawtune export runs/demo --to gguf -o out/export/gguf          # llama.cpp: f16 + Q8_0 of the merged model
    lawtune export runs/demo --to gguf-lora -o out/export/lora     # the original base GGUF + the adapter as GGUF LoRA
    lawtune export runs/demo --to ollama -o out/export/ollama      # gguf-lora files + a Modelfile
    lawtune export runs/demo --to vllm -o out/export/vllm          # adapter + template + the `vllm serve` line
    from lawtune.export.export import run; run("runs/demo", "gguf", "out/export/gguf")

Every export writes DIR/README.md, the model card (card.py), and DIR appears whole or not at all (atomic_dir:
built in a temporary sibling, renamed at the end). Formats and their files: docs/export.md.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

from lawtune.errors import LawtuneError
from lawtune.export import gguf as g
from lawtune.export.card import write_card
from lawtune.fsutil import atomic_dir, atomic_write_json, atomic_write_text
from lawtune.modeling.loading import open_chat
from lawtune.modeling.runs import RunInfo, is_run_dir, lawtune_home, read_run

FORMATS = ("merged", "gguf", "gguf-lora", "ollama", "vllm")


def run(run_dir: str | Path, fmt: str, out_dir: str | Path, *, adapter: str = "best", dtype: str | None = None,
        quant: str = "Q8_0", force: bool = False, say=print) -> Path:
    """Export the run's adapter (`best`, or `final`) as `fmt` into `out_dir`; returns `out_dir`."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    # Gemma's activations overflow float16 in transformers (bfloat16 is its native type); llama.cpp computes in
    # float32 whatever the file holds, and f16 is the type its tools expect
    dtype = dtype or ("bf16" if fmt == "merged" else "f16")
    problems = []
    if fmt not in FORMATS:
        problems.append(f"--to {fmt!r} is not one of {', '.join(FORMATS)}")
    if adapter not in ("best", "final"):
        problems.append(f"--adapter {adapter!r} is not best or final")
    if dtype not in g.FLOAT_TYPES:
        problems.append(f"--dtype {dtype!r} is not one of {', '.join(g.FLOAT_TYPES)}")
    if quant.lower() != "none" and quant.upper() not in g.QUANT_TYPES:
        problems.append(f"--quant {quant!r} is not one of {', '.join(g.QUANT_TYPES)} or none")
    if not is_run_dir(run_dir):
        problems.append(f"{run_dir} is not a run folder (no run.json); train one with `lawtune train CONFIG`")
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        problems.append(f"{out_dir} exists and is not empty; pass --force to replace it")
    if problems:
        raise LawtuneError("; ".join(problems))

    info = read_run(run_dir)
    adapter_dir = info.adapter_dir("best" if adapter == "best" else "final")
    if fmt == "gguf" and quant.lower() != "none":
        g.require_llama_cpp()  # fail before the merge and the conversion, not after
    say(f"exporting {adapter_dir} as {fmt} into {out_dir}")
    with atomic_dir(out_dir) as tmp:
        if fmt == "merged":
            files, usage = _merged(info, adapter_dir, tmp, dtype, say)
        elif fmt == "gguf":
            files, usage = _gguf(info, adapter_dir, tmp, dtype, quant, say)
        elif fmt in ("gguf-lora", "ollama"):
            files, usage = _gguf_lora(info, adapter_dir, tmp, dtype, quant, say, ollama=fmt == "ollama")
        else:
            files, usage = _vllm(info, adapter_dir, tmp, out_dir, say)
        atomic_write_json(tmp / "lawtune_export.json", {"run": str(run_dir.resolve()), "adapter": str(adapter_dir.resolve()),
                                                        "format": fmt, "dtype": dtype, "quant": quant, "files": files})
        write_card(tmp, info, adapter_dir, fmt, files, usage.replace("DIR", str(out_dir)))
    say(f"done: {out_dir} ({', '.join(files)})")
    return out_dir


# ---- merged: one Hugging Face folder -------------------------------------------------------------------------


def _merged(info: RunInfo, adapter_dir: Path, tmp: Path, dtype: str, say) -> tuple[list[str], str]:
    from lawtune.export.merged import write_merged

    torch_dtype = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[dtype]
    say(f"merging the adapter into the base ({torch_dtype})…")
    write_merged(info, adapter_dir, tmp, torch_dtype)
    usage = """```python
from transformers import pipeline
chat = pipeline("text-generation", "DIR")
print(chat([{"role": "user", "content": "公司拖欠工资怎么办？"}], max_new_tokens=256, do_sample=False)[0]["generated_text"][-1])
```

```bash
vllm serve DIR --served-model-name lawtune        # the chat template and the end-of-turn stop are in the folder
```"""
    return sorted(p.name for p in tmp.iterdir()), usage


# ---- gguf: the merged model through llama.cpp's converter, then llama.cpp's quantizer ---------------------------


def _gguf(info: RunInfo, adapter_dir: Path, tmp: Path, dtype: str, quant: str, say) -> tuple[list[str], str]:
    from lawtune.export.merged import write_merged

    original = g.original_gguf(info.base_model, lawtune_home() / "gguf")
    merged = tmp / ".merged"
    merged.mkdir()
    say("merging the adapter into the base (float32)…")
    write_merged(info, adapter_dir, merged, "float32")
    float_file = tmp / f"model-{dtype}.gguf"
    say(f"converting to GGUF {dtype} with llama.cpp's converter"
        + (f" (vocabulary from {original.name})…" if original else "…"))
    g.convert_model(merged, float_file, dtype, vocab_from=original)
    shutil.rmtree(merged)
    files = [float_file.name]
    if quant.lower() != "none":
        say(f"quantizing to {quant.upper()} with llama.cpp…")
        files.append(g.quantize(float_file, tmp / f"model-{quant.upper()}.gguf", quant.upper()).name)
    main = files[-1]
    usage = f"""```bash
llama-cli -m DIR/{main} -cnv          # the chat template is in the file; it stops at the end-of-turn token
```

```python
from llama_cpp import Llama
llm = Llama(model_path="DIR/{main}", n_ctx=2048)
print(llm.create_chat_completion([{{"role": "user", "content": "公司拖欠工资怎么办？"}}], temperature=0)["choices"][0]["message"]["content"])
```"""
    return files, usage


# ---- gguf-lora / ollama: the original base GGUF + the adapter as a GGUF LoRA -------------------------------------


def _gguf_lora(info: RunInfo, adapter_dir: Path, tmp: Path, dtype: str, quant: str, say,
               ollama: bool) -> tuple[list[str], str]:
    from lawtune.export.ollama import modelfile

    original = g.original_gguf(info.base_model, lawtune_home() / "gguf")
    if original is not None:
        base_file = tmp / f"base-{original.name}"
        say(f"base: the original {original.name}, as imported (not quantized again)")
        _link_or_copy(original, base_file)
    else:
        base_file = tmp / f"base-{dtype}.gguf"
        say(f"base: {info.base_model} to GGUF {dtype} with llama.cpp's converter…")
        g.convert_model(info.base_model, base_file, dtype)
        if quant.lower() != "none":
            say(f"quantizing the base to {quant.upper()}…")
            quantized = g.quantize(base_file, tmp / f"base-{quant.upper()}.gguf", quant.upper())
            base_file.unlink()
            base_file = quantized
    lora_file = tmp / f"adapter-{dtype}.gguf"
    say("converting the adapter with llama.cpp's convert_lora_to_gguf…")
    _, dropped = g.convert_lora(adapter_dir, info.base_model, lora_file, dtype)
    atomic_write_text(tmp / "chat_template.jinja", info.template)
    files = [base_file.name, lora_file.name, "chat_template.jinja"]
    chat = open_chat(info)
    if ollama:
        atomic_write_text(tmp / "Modelfile", modelfile(chat, base_file.name, adapter=lora_file.name))
        files.append("Modelfile")
    note = ("\n\nLeft out of the GGUF LoRA (llama.cpp's LoRA format has no place for them; the merged `gguf` "
            f"export keeps them): {', '.join(dropped)}." if dropped else "")
    if ollama:
        usage = f"""```bash
cd DIR && ollama create lawtune -f Modelfile && ollama run lawtune "公司拖欠工资怎么办？"
```{note}"""
    else:
        usage = f"""```bash
llama-cli -m DIR/{base_file.name} --lora DIR/{lora_file.name} --chat-template-file DIR/chat_template.jinja -cnv
```

```python
from llama_cpp import Llama
llm = Llama(model_path="DIR/{base_file.name}", lora_path="DIR/{lora_file.name}", n_ctx=2048)
```

The base file carries no chat template (the imported GGUF had none); llama-cpp-python takes
`chat_handler`/`chat_format`, or format prompts with chat_template.jinja yourself.{note}"""
    return files, usage


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        dst.hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)


# ---- vllm: the adapter, the template, the command line ------------------------------------------------------------


def _vllm(info: RunInfo, adapter_dir: Path, tmp: Path, out_dir: Path, say) -> tuple[list[str], str]:
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    chat = open_chat(info)
    atomic_write_text(tmp / "chat_template.jinja", info.template)
    atomic_write_json(tmp / "generation_config.json", {"eos_token_id": chat.stop_token_ids,
                                                       "bos_token_id": chat.tokenizer.bos_token_id,
                                                       "pad_token_id": chat.tokenizer.pad_token_id})
    if config.get("trainable_token_indices"):
        # trained token rows are not LoRA matrices: vLLM's LoRA loader takes lora_A/lora_B only, so this
        # adapter is served merged (the same weights `lawtune eval` measured)
        say("the adapter trains token rows (trainable_token_indices), which vLLM's LoRA cannot load: "
            "writing the merged model instead")
        from lawtune.export.merged import write_merged

        write_merged(info, adapter_dir, tmp / "model", "bfloat16")

        def args(folder: str) -> list[str]:
            return ["vllm", "serve", f"{folder}/model", "--served-model-name", "legal", "--port", "8001"]
        why = ("The adapter also trains whole token rows (`trainable_token_indices`: the end-of-turn token), "
               "which vLLM's LoRA support cannot load, so the model is served merged (`model/`, bfloat16, "
               "chat template and end-of-turn stop inside).")
    else:
        shutil.copytree(adapter_dir, tmp / "adapter")
        rank = max(8, 1 << (int(config.get("r", 8)) - 1).bit_length())

        def args(folder: str) -> list[str]:
            return ["vllm", "serve", str(info.base_model), "--enable-lora", "--lora-modules", f"legal={folder}/adapter",
                    "--max-lora-rank", str(rank), "--chat-template", f"{folder}/chat_template.jinja",
                    "--generation-config", folder, "--port", "8001"]
        why = ("vLLM serves the base model and applies the adapter (`--lora-modules legal=...`); the base folder has "
               "no chat template and stops only at `<eos>`, so the command passes the run's template and this "
               "folder's generation_config.json (end-of-turn among the eos ids).")
    command = shlex.join(args("DIR"))
    usage = f"""```bash
{command}
# then, from anywhere: the gateway in front of it (docs/gateway.md)
lawtune serve RUN --upstream http://GPU_HOST:8001 --keys-file keys.yaml
```

{why}"""
    # every word quoted: a path holding a space, `$(…)` or a quote is one argument, never shell code
    atomic_write_text(tmp / "vllm-serve.sh", "#!/bin/sh\nexec " + shlex.join(args(str(out_dir))) + ' "$@"\n')
    (tmp / "vllm-serve.sh").chmod(0o755)
    return sorted(p.name for p in tmp.iterdir()), usage
