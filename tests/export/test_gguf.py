"""`--to gguf` and `--to gguf-lora` on a run whose base came from a GGUF (as the default model does), loaded by
llama.cpp itself (llama-cpp-python) and compared with lawtune's own greedy tokens.

The base is a tiny SentencePiece Gemma 3 written to GGUF by llama.cpp's converter and imported with `lawtune
model import FILE.gguf`; f32 files so that llama.cpp and transformers agree token for token on random weights.
"""

from __future__ import annotations

import json
import shutil

import pytest

from export_helpers import train_tiny
from lawtune.export.export import run as export
from lawtune.fsutil import sha256_file
from lawtune.modeling.loading import load_model
from lawtune.modeling.runs import read_run

QUESTIONS = ["公司拖欠工资怎么办？", "离婚需要什么材料？", "劳动合同到期不续签有补偿吗？"]
N = 10


def _lawtune_greedy(model, ids, n=N):
    import torch

    ids = list(ids)
    with torch.inference_mode():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[-n:]


def _llama_greedy(llm, ids, n=N):
    llm.reset()
    tokens = []
    for token in llm.generate(list(ids), top_k=1, temp=0.0, repeat_penalty=1.0):
        tokens.append(token)
        if len(tokens) == n:
            break
    return tokens


def _llama(path, **kwargs):
    from llama_cpp import Llama

    return Llama(model_path=str(path), n_ctx=256, n_threads=2, verbose=False, seed=0, **kwargs)


def test_gguf_export_loads_in_llama_cpp_with_lawtunes_tokens_and_template(gguf_run_dir, tmp_path):
    out = export(gguf_run_dir, "gguf", tmp_path / "gguf", dtype="f32", quant="Q8_0")
    assert sorted(p.name for p in out.glob("*.gguf")) == ["model-Q8_0.gguf", "model-f32.gguf"]
    loaded = load_model(gguf_run_dir, merge=True)
    llm = _llama(out / "model-f32.gguf")
    assert llm.metadata["tokenizer.chat_template"] == loaded.chat.template
    for question in QUESTIONS:
        ids = loaded.chat.encode_prompt([{"role": "user", "content": question}])
        text = loaded.chat.render([{"role": "user", "content": question}], add_generation_prompt=True)
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids  # the original vocabulary
        assert _llama_greedy(llm, ids) == _lawtune_greedy(loaded.model, ids)  # the trained end-of-turn row too
    # the chat API uses the template in the file and stops at the end-of-turn token
    reply = llm.create_chat_completion([{"role": "user", "content": QUESTIONS[0]}], temperature=0, max_tokens=8)
    assert reply["choices"][0]["finish_reason"] in ("stop", "length")
    quantized = _llama(out / "model-Q8_0.gguf")
    assert len(_llama_greedy(quantized, ids, 4)) == 4
    assert "llama-cli -m" in (out / "README.md").read_text(encoding="utf-8")


def test_gguf_lora_applies_on_the_original_base_file(gguf_run_dir, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file, save_file

    out = export(gguf_run_dir, "gguf-lora", tmp_path / "lora", dtype="f32")
    run = read_run(gguf_run_dir)
    base_file = next(out.glob("base-*.gguf"))
    recorded = json.loads((run.base_model / "lawtune_import.json").read_text(encoding="utf-8"))["gguf_sha256"]
    assert sha256_file(base_file) == recorded  # the original file, not converted or quantized again

    # what llama.cpp can apply: the LoRA matrices without the trained token row (left out, named in the card)
    lora_only = tmp_path / "lora-only"
    adapter = run.adapter_dir()
    shutil.copytree(adapter, lora_only)
    weights = load_file(adapter / "adapter_model.safetensors")
    save_file({k: v for k, v in weights.items() if "lora_" in k}, lora_only / "adapter_model.safetensors")
    config = json.loads((lora_only / "adapter_config.json").read_text())
    config.pop("trainable_token_indices")
    (lora_only / "adapter_config.json").write_text(json.dumps(config))
    base = load_model(gguf_run_dir, base_only=True)
    reference = PeftModel.from_pretrained(base.model, lora_only).eval()

    llm = _llama(base_file, lora_path=str(next(out.glob("adapter-*.gguf"))))
    for question in QUESTIONS:
        ids = base.chat.encode_prompt([{"role": "user", "content": question}])
        assert _llama_greedy(llm, ids) == _lawtune_greedy(reference, ids)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "trainable_tokens_delta" in card and "--lora" in card


def test_ollama_export_is_the_gguf_lora_files_plus_a_modelfile(gguf_run_dir, tmp_path):
    out = export(gguf_run_dir, "ollama", tmp_path / "ollama", dtype="f32")
    modelfile = (out / "Modelfile").read_text(encoding="utf-8")
    base, adapter = next(out.glob("base-*.gguf")).name, next(out.glob("adapter-*.gguf")).name
    assert modelfile.startswith(f"FROM ./{base}\nADAPTER ./{adapter}\nTEMPLATE \"\"\"")
    assert 'PARAMETER stop "<end_of_turn>"' in modelfile and "{{ .Content }}<end_of_turn>" in modelfile
    assert "ollama create" in (out / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("fmt", ["gguf", "gguf-lora"])
def test_a_base_without_its_original_gguf_is_converted_by_llama_cpp(fmt, spm_model_dir, tmp_path):
    run_dir = train_tiny(str(spm_model_dir), tmp_path, steps=2)  # an HF-folder base with a tokenizer.model
    out = export(run_dir, fmt, tmp_path / fmt, dtype="f32", quant="none")
    files = sorted(p.name for p in out.glob("*.gguf"))
    assert files == (["model-f32.gguf"] if fmt == "gguf" else ["adapter-f32.gguf", "base-f32.gguf"])
    llm = _llama(out / files[-1]) if fmt == "gguf" else _llama(out / files[1], lora_path=str(out / files[0]))
    assert len(_llama_greedy(llm, [2, 4, 10, 20], 3)) == 3
