"""A real short training of the tiny model: the run folder, best checkpoint, early stopping, CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from lawtune.errors import LawtuneError
from lawtune.fsutil import sha256_tree
from lawtune.modeling.loading import load_model
from lawtune.modeling.runs import read_metrics
from lawtune.training.train import run

from training_helpers import tiny_config


@pytest.fixture(scope="module")
def training(tiny_model_dir, conversation_files, tmp_path_factory):
    """One short training: (run folder, every parameter before training, the model after, the trainable names)."""
    import lawtune.training.train as train_module

    folder = tmp_path_factory.mktemp("train")
    # report_to is one of the values lawtune sets itself: the run says so and records it
    config = tiny_config(folder, tiny_model_dir, conversation_files, training_args={"report_to": ["wandb"]})
    seen = {}
    build = train_module._build_trainer

    def build_and_snapshot(*args, **kwargs):
        trainer = build(*args, **kwargs)
        seen["model"] = trainer.model
        seen["before"] = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
        seen["trainable"] = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
        return trainer

    said = pytest.warns(UserWarning, match=r"training_args.report_to=\['wandb'\] is not used")
    with pytest.MonkeyPatch.context() as patch, said:
        patch.setattr(train_module, "_build_trainer", build_and_snapshot)
        run_dir = run(config, resume="none")
    return run_dir, seen["before"], seen["model"], seen["trainable"]


@pytest.fixture(scope="module")
def trained(training):
    return training[0]


def test_run_folder_holds_everything(trained, tiny_model_dir):
    for name in ("run.json", "config.yaml", "chat_template.jinja", "tokenizer/tokenizer.json", "adapter/adapter_config.json",
                 "best/adapter_config.json", "best/best.json", "metrics.jsonl", "loss_curve.png"):
        assert (trained / name).is_file(), name
    assert (trained / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((trained / "tensorboard").glob("events.out.tfevents.*"))
    info = json.loads((trained / "run.json").read_text())
    assert info["status"] == "finished" and info["final_step"] == 12
    overridden = info["overridden"]["training_args.report_to"]
    assert list(info["overridden"]) == ["training_args.report_to"]
    assert (overridden["given"], overridden["used"]) == (["wandb"], [])
    assert info["base_model"] == {"path": str(tiny_model_dir), "sha256": sha256_tree(tiny_model_dir)}
    # 48 training conversations; the tiny byte-level tokenizer makes most answers longer than the 48-token
    # budget: cut at a sentence end when one fits, else dropped — every one accounted for
    train = info["data"]["train"]
    assert train["examples"] + sum(train["dropped"].values()) == 48 and train["examples"] >= 12
    assert set(train["dropped"]) <= {"answer longer than max_output_length with no sentence end inside it"}
    assert set(train["changed"]) <= {"answer cut at a sentence end to fit max_output_length"}
    assert info["data"]["dev"]["examples"] + sum(info["data"]["dev"]["dropped"].values()) == 12
    assert info["precision"] in ("fp32", "bf16-autocast")
    assert info["loss_path"] == "fused"  # the tiny Gemma 3 has a frozen, plain, tied output head
    if not torch.cuda.is_available():  # the attention the model trained with: eager on a CPU for short rows
        assert info["attention"] == "eager"
    # save_total_limit 2 of checkpoints every 4 steps; each one marked complete
    checkpoints = sorted(p.name for p in trained.glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-12", "checkpoint-8"]
    assert all((trained / name / "lawtune_complete.json").is_file() for name in checkpoints)


def test_dev_loss_goes_down_and_best_is_the_lowest(trained):
    events = read_metrics(trained)
    evals = [(e["step"], e["eval_loss"]) for e in events if "eval_loss" in e]
    assert [step for step, _ in evals] == [4, 8, 12]
    assert evals[-1][1] < evals[0][1]
    best_step, best_loss = min(evals, key=lambda item: item[1])
    best = json.loads((trained / "best" / "best.json").read_text())
    assert best["step"] == best_step and best["value"] == pytest.approx(best_loss)
    assert all("loss" in e for e in events if "eval_loss" not in e and "train_runtime" not in e)


def test_lora_weights_changed_and_the_adapter_reloads(trained, tiny_model_dir):
    weights = load_file(trained / "adapter" / "adapter_model.safetensors")
    lora_b = [value for key, value in weights.items() if "lora_B" in key]
    assert lora_b and all(value.abs().sum() > 0 for value in lora_b)  # B starts at zero: every one was trained
    loaded = load_model(trained)
    assert loaded.adapter_path == trained / "best"
    prompt = loaded.chat.encode_prompt([{"role": "user", "content": "公司拖欠工资怎么办？"}])
    out = loaded.model.generate(torch.tensor([prompt]), max_new_tokens=4, do_sample=False)
    assert out.shape[1] > len(prompt)


def test_base_weights_stay_frozen_and_every_trainable_parameter_changed(training):
    _run_dir, before, model, trainable = training
    after = dict(model.named_parameters())
    assert trainable and all("lora_" in name for name in trainable)  # LoRA only: the base is frozen
    assert set(after) == set(before)
    changed = {name for name in after if not torch.equal(after[name].detach(), before[name])}
    assert changed == trainable, (sorted(changed - trainable)[:3], sorted(trainable - changed)[:3])


def test_gradient_checkpointing_and_sparse_dropout_still_train_every_adapter(tiny_model_dir, conversation_files,
                                                                            tmp_path):
    # finetune_hf.py turns checkpointing on; with a frozen embedding, re-entrant checkpointing would leave the
    # LoRA weights without gradients unless the inputs require grad.
    config = tiny_config(tmp_path, tiny_model_dir, conversation_files,
                         training_args={"max_steps": 3, "gradient_checkpointing": True, "eval_strategy": "no",
                                        "save_strategy": "no"},
                         peft_config={"lora_dropout": 0.1})
    run_dir = run(config, resume="none")
    weights = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    lora_b = [value for key, value in weights.items() if "lora_B" in key]
    assert lora_b and all(value.abs().sum() > 0 for value in lora_b)


def test_early_stopping_stops_after_patience_evals(tiny_model_dir, conversation_files, tmp_path):
    # "best" = highest dev loss while the loss falls: every eval after the first is worse, so patience 2 stops at
    # the third eval (step 6) instead of step 40.
    config = tiny_config(tmp_path, tiny_model_dir, conversation_files,
                         training_args={"max_steps": 40, "eval_steps": 2, "save_steps": 100, "greater_is_better": True},
                         eval={"early_stopping_patience": 2, "dev_rows": 4})
    run_dir = run(config, resume="none")
    info = json.loads((run_dir / "run.json").read_text())
    assert info["final_step"] == 6
    assert json.loads((run_dir / "best" / "best.json").read_text())["step"] == 2


def test_config_and_file_problems_are_one_line_cli_errors(tiny_model_dir, conversation_files, tmp_path):
    config = tiny_config(tmp_path, tiny_model_dir, conversation_files, data_config={"train_file": str(tmp_path / "no.jsonl")})
    with pytest.raises(LawtuneError, match=r"no\.jsonl: no such file; .*`lawtune prepare"):
        run(config)
    result = subprocess.run([sys.executable, "-m", "lawtune.cli", "train", str(config), "peft_config.rr=3"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {config}: unknown key peft_config.rr (did you mean peft_config.r?)"]
    with pytest.raises(LawtuneError, match="model '/nope' not found"):
        run(config, ["model.name_or_path=/nope"])


def test_attention_defaults_to_eager_on_a_cpu_unless_configured():
    import torch

    from lawtune.training.config import ModelSection
    from lawtune.training.train import training_attention

    assert training_attention(ModelSection(attn_implementation="sdpa")) == "sdpa"
    assert training_attention(ModelSection(trust_remote_code=True)) is None  # remote code keeps its own
    assert training_attention(ModelSection()) == (None if torch.cuda.is_available() else "eager")
    # long rows (tool-use prompts): eager's T × T attention probabilities per layer would cost GBs
    assert training_attention(ModelSection(), 256 + 256) == (None if torch.cuda.is_available() else "eager")
    assert training_attention(ModelSection(), 1536 + 256) == (None if torch.cuda.is_available() else "sdpa")
    assert training_attention(ModelSection(attn_implementation="eager"), 1536 + 256) == "eager"


def test_a_second_stage_starts_from_the_first_stages_adapter(trained, tiny_model_dir, conversation_files, tmp_path):
    """model.init_adapter: the new run's LoRA weights start as the given run's best adapter (not fresh: lora_B
    would be zero), then train on; an adapter of another shape is a clear error, never a half-loaded start."""
    import lawtune.training.train as train_module

    first = load_file(trained / "best" / "adapter_model.safetensors")
    config = tiny_config(tmp_path, tiny_model_dir, conversation_files, model={"init_adapter": str(trained)},
                         training_args={"max_steps": 2, "eval_strategy": "no", "save_strategy": "no"})
    seen = {}
    build = train_module._build_trainer

    def build_and_snapshot(*args, **kwargs):
        trainer = build(*args, **kwargs)
        seen["start"] = {name.replace(".default", ""): p.detach().clone() for name, p in trainer.model.named_parameters()
                         if p.requires_grad}
        return trainer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "_build_trainer", build_and_snapshot)
        run_dir = run(config, resume="none")
    assert set(seen["start"]) == set(first)
    assert all(torch.equal(seen["start"][name], first[name]) for name in first)
    assert any("lora_B" in name and first[name].abs().sum() > 0 for name in first)
    after = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert any(not torch.equal(after[name], first[name]) for name in first)  # and it trained on from there

    (tmp_path / "other").mkdir()
    other = tiny_config(tmp_path / "other", tiny_model_dir, conversation_files, model={"init_adapter": str(trained)},
                        peft_config={"r": 4}, training_args={"max_steps": 1, "eval_strategy": "no",
                                                             "save_strategy": "no"})
    with pytest.raises(LawtuneError, match="init_adapter"):
        run(other, resume="none")
    with pytest.raises(LawtuneError, match="neither a lawtune run folder nor an adapter folder"):
        run(config, [f"model.init_adapter={tmp_path}"], resume="none")
