"""`lawtune export --to merged | vllm | ollama`: files another engine reads, checked with that engine where it runs.

The merged folder is loaded with plain transformers and must give lawtune's greedy tokens; vLLM and Ollama
cannot run here (no GPU, no Ollama), so their tests check the files they read: the command line, the
generation config, the Modelfile's template against the Jinja template it was translated from.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lawtune.cli import app
from lawtune.errors import LawtuneError
from lawtune.export.export import run as export
from lawtune.export.ollama import template_pieces
from lawtune.modeling.chat import ChatFormat, load_template
from lawtune.modeling.loading import load_model, load_tokenizer
from lawtune.modeling.runs import read_run

QUESTIONS = ["公司拖欠工资怎么办？", "离婚需要什么材料？", "交通事故责任怎么认定？"]


def _greedy(model, ids, n=12):
    """n greedy tokens by plain forward passes, never stopping (a tiny model may end at once: that says nothing)."""
    import torch

    ids = list(ids)
    with torch.inference_mode():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[-n:]


def test_merged_folder_loads_in_plain_transformers_with_lawtunes_greedy_tokens(token_run_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    out = export(token_run_dir, "merged", tmp_path / "merged", dtype="f32")
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    loaded = load_model(token_run_dir, merge=True)  # what `lawtune infer RUN` generates with
    for question in QUESTIONS:
        messages = [{"role": "user", "content": question}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        assert list(ids) == loaded.chat.encode_prompt(messages)  # the run's template travels in the folder
        assert _greedy(model, list(ids)) == _greedy(loaded.model, list(ids))
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    eos = GenerationConfig.from_pretrained(out).eos_token_id
    assert end_of_turn in eos and tokenizer.eos_token_id in eos
    assert json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))["chat_template"] == loaded.chat.template
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "## Base model" in card and "## Training data" in card and "compare` has not been run" in card


def test_vllm_export_of_a_pure_lora_adapter_has_the_adapter_and_the_exact_command(tiny_run_dir, tmp_path):
    out = export(tiny_run_dir, "vllm", tmp_path / "vllm")
    adapter = out / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4
    script = (out / "vllm-serve.sh").read_text(encoding="utf-8")
    assert f"--lora-modules legal={out}/adapter" in script and f"--chat-template {out}/chat_template.jinja" in script
    assert f"--generation-config {out} " in script and "--max-lora-rank 8" in script and "--enable-lora" in script
    tokenizer = load_tokenizer(tiny_run_dir / "tokenizer")
    assert tokenizer.convert_tokens_to_ids("<end_of_turn>") in json.loads((out / "generation_config.json").read_text())["eos_token_id"]
    assert "vllm serve" in (out / "README.md").read_text(encoding="utf-8")


def test_vllm_serve_script_quotes_every_path(tiny_run_dir, tmp_path):
    """A -o path holding a space, `$(…)` and quotes (issue 25 item 6): the script runs nothing of it and hands
    `vllm` exactly the arguments the command means (a stand-in `vllm` on PATH records its argv)."""
    import os
    import subprocess

    out = export(tiny_run_dir, "vllm", tmp_path / "a b $(touch PWNED) `touch PWNED2` 'q\"" / "vllm")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    argv_file = tmp_path / "argv.json"
    fake = bin_dir / "vllm"
    fake.write_text(f"#!/usr/bin/env python3\nimport json, sys\njson.dump(sys.argv[1:], open({str(argv_file)!r}, 'w'))\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run([str(out / "vllm-serve.sh"), "--extra", "x y"], cwd=tmp_path, env=env, check=True, timeout=60)
    argv = json.loads(argv_file.read_text())
    assert argv[:2] == ["serve", str(read_run(tiny_run_dir).base_model)]
    assert argv[argv.index("--lora-modules") + 1] == f"legal={out}/adapter"
    assert argv[argv.index("--generation-config") + 1] == str(out) and argv[-2:] == ["--extra", "x y"]
    assert not list(tmp_path.rglob("PWNED*"))


def test_vllm_export_serves_merged_when_the_adapter_trains_token_rows(token_run_dir, tmp_path):
    out = export(token_run_dir, "vllm", tmp_path / "vllm")
    assert (out / "model" / "config.json").is_file() and not (out / "adapter").exists()
    assert f"vllm serve {out}/model" in (out / "vllm-serve.sh").read_text(encoding="utf-8")


def test_ollama_template_is_the_jinja_template_in_go(tiny_model_dir):
    chat = ChatFormat(load_tokenizer(tiny_model_dir), load_template("gemma"))
    pieces = template_pieces(chat)
    assert pieces == {"user_before": "<start_of_turn>user\n", "user_after": "<end_of_turn>\n",
                      "answer_before": "<start_of_turn>model\n", "answer_after": "<end_of_turn>\n",
                      "header": "<start_of_turn>model\n", "system_fold": "\n\n"}
    # the Go template filled in by hand for [system, user, assistant, user] equals the Jinja rendering
    messages = [{"role": "system", "content": "你是律师。"}, {"role": "user", "content": "问一"},
                {"role": "assistant", "content": "答一"}, {"role": "user", "content": "问二"}]
    by_pieces = (pieces["user_before"] + "你是律师。" + pieces["system_fold"] + "问一" + pieces["user_after"]
                 + pieces["answer_before"] + "答一" + pieces["answer_after"]
                 + pieces["user_before"] + "问二" + pieces["user_after"] + pieces["header"])
    assert chat.tokenizer.bos_token + by_pieces == chat.render(messages, add_generation_prompt=True)


def test_bad_input_is_one_clear_error(tiny_run_dir, tmp_path):
    with pytest.raises(LawtuneError, match="--to 'onnx' is not one of merged, gguf"):
        export(tiny_run_dir, "onnx", tmp_path / "x")
    with pytest.raises(LawtuneError, match="not a run folder"):
        export(tmp_path, "merged", tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    result = CliRunner().invoke(app, ["export", str(tiny_run_dir), "--to", "merged", "-o", str(tmp_path / "full"),
                                      "--quant", "Q3"])
    assert result.exit_code != 0 and isinstance(result.exception, LawtuneError)
    assert "--force" in str(result.exception) and "--quant 'Q3'" in str(result.exception)
    assert (tmp_path / "full" / "keep.txt").is_file()
