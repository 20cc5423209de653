"""llama.cpp's HF → GGUF converter, run with the vocabulary of an existing GGUF (a subprocess of `lawtune export`).

    python llama_cpp_convert.py MERGED_DIR OUT.gguf --outtype f16 --vocab-from BASE.gguf

Why: a base imported from a GGUF (the default Gemma 3 270M) comes back from transformers as a folder whose
tokenizer is a `tokenizer.json` rebuilt from the GGUF — no `tokenizer.model` — and llama.cpp's converter
would then guess a byte-level BPE vocabulary for it, which tokenizes Gemma's text differently. The merged
weights go through llama.cpp's converter unchanged (its tensor names, Gemma's norm shift, ...); only the
vocabulary — every `tokenizer.ggml.*` field — is copied from the original GGUF, so the export tokenizes
exactly as the file it was imported from. The chat template is the run's (from MERGED_DIR's tokenizer).

This file runs in its own interpreter with the vendored converter (lawtune/vendor/llama_cpp/, with its own
gguf-py) first on sys.path, the way llama.cpp runs its scripts: lawtune's process keeps the PyPI `gguf` that
transformers uses. It subclasses the converter's model class, as llama.cpp's own convert_lora_to_gguf.py does.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

VENDORED = Path(__file__).resolve().parent.parent / "vendor" / "llama_cpp"
sys.path.insert(0, str(VENDORED))
sys.path.insert(1, str(VENDORED / "gguf-py"))

import gguf  # noqa: E402  (the vendored gguf-py, matching the converter)
import torch  # noqa: E402
from conversion import ModelBase, ModelType, get_model_architecture, get_model_class  # noqa: E402

OUTTYPES = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
            "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}


def copy_vocab(writer, vocab_gguf: Path, chat_template: str | None) -> int:
    """Every tokenizer.* field of `vocab_gguf` into `writer`, with `chat_template` instead of its template."""
    reader = gguf.GGUFReader(vocab_gguf)
    copied = 0
    for field in reader.fields.values():
        if not field.name.startswith("tokenizer.") or field.name == gguf.Keys.Tokenizer.CHAT_TEMPLATE:
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub_type)
        copied += 1
    if chat_template:
        writer.add_chat_template(chat_template)
    return copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("outfile", type=Path)
    parser.add_argument("--outtype", choices=sorted(OUTTYPES), default="f16")
    parser.add_argument("--vocab-from", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    config = json.loads((args.model / "tokenizer_config.json").read_text(encoding="utf-8"))
    template = config.get("chat_template")
    with torch.inference_mode():
        hparams = ModelBase.load_hparams(args.model, False)
        model_class = get_model_class(get_model_architecture(hparams, ModelType.TEXT))

        class WithVocabFrom(model_class):  # ty: ignore[unsupported-base]
            model_arch = model_class.model_arch  # the converter's registry asks every subclass for it

            def set_vocab(self):
                copy_vocab(self.gguf_writer, args.vocab_from, template)

        WithVocabFrom(args.model, OUTTYPES[args.outtype], args.outfile, hparams=hparams).write()


if __name__ == "__main__":
    main()
