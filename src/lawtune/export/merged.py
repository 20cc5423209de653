"""Base + LoRA adapter merged into one plain Hugging Face folder (what `--to merged` writes).

    write_merged(run, adapter_dir, out_dir / "model", dtype="float32")

The folder loads with `AutoModelForCausalLM.from_pretrained(DIR)` / `pipeline("text-generation", DIR)` and
with `vllm serve DIR`, no extra flags: the run's chat template sits in the tokenizer (tokenizer_config.json
and chat_template.jinja, for old and new transformers), and generation_config.json lists the end-of-turn
token among the eos ids, so every engine stops where lawtune stops. The merge is PEFT's
`merge_and_unload`, the same one `lawtune eval` / `compare` use; trained token rows
(`trainable_token_indices`) are folded into the embedding too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lawtune.errors import LawtuneError
from lawtune.fsutil import atomic_write_json
from lawtune.modeling.chat import ChatFormat
from lawtune.modeling.loading import DTYPES, load_tokenizer
from lawtune.modeling.runs import RunInfo


def write_merged(run: RunInfo, adapter_dir: Path, out_dir: Path, dtype: str = "float32") -> ChatFormat:
    """Write the merged model + tokenizer into `out_dir` (an existing, empty folder); returns the chat format."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise LawtuneError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if not (run.base_model / "config.json").is_file():
        raise LawtuneError(f"the run's base model {run.base_model} is missing; import it (`lawtune model import`) first")
    tokenizer = load_tokenizer(run.tokenizer_dir)
    chat = ChatFormat(tokenizer, run.template)

    # float32 for the merge itself (the adapter was trained against float32 weights), then the asked dtype
    base = AutoModelForCausalLM.from_pretrained(run.base_model, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged = merged.to(getattr(torch, dtype))
    config = merged.generation_config
    config.eos_token_id = chat.stop_token_ids if len(chat.stop_token_ids) > 1 else chat.stop_token_ids[0]
    config.pad_token_id = tokenizer.pad_token_id
    config.bos_token_id = tokenizer.bos_token_id
    merged.save_pretrained(out_dir, safe_serialization=True)

    tokenizer.chat_template = run.template
    tokenizer.save_pretrained(out_dir)
    _template_in_tokenizer_config(out_dir, run.template)
    # transformers 5 saves only tokenizer.json; a SentencePiece base's own model file goes along, since
    # llama.cpp's converter (and older readers) build the vocabulary from it
    if (run.base_model / "tokenizer.model").is_file():
        shutil.copy2(run.base_model / "tokenizer.model", out_dir / "tokenizer.model")
    return chat


def _template_in_tokenizer_config(out_dir: Path, template: str) -> None:
    """transformers ≥ 4.43 writes the template to chat_template.jinja; older readers (and tools that read
    tokenizer_config.json directly, like llama.cpp's converter) look for the key, so it is written there too."""
    path = out_dir / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    config["chat_template"] = template
    atomic_write_json(path, config)
