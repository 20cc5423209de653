"""Activation checkpointing: the same loss and gradients as without it, bit for bit, on the tiny Gemma 3 model."""

from __future__ import annotations

import copy

import pytest
import torch

from lawtune.training.checkpointing import checkpoint_layers, decoder_layers
from lawtune.training.dropout import use_sparse_dropout
from lawtune.training.fused_lora import use_fused_lora
from lawtune.training.loss import supervised_loss

pytestmark = pytest.mark.unit


def _model(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=0.3, target_modules="all-linear"))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)  # nonzero, so the adapters (and their dropout) matter
    use_sparse_dropout(model)
    use_fused_lora(model)
    return model.train()


def _batch():
    input_ids = torch.arange(2, 50).reshape(3, 16)
    labels = input_ids.clone()
    labels[:, :6] = -100  # a prompt, then the supervised answer
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def _two_steps(model, bf16: bool):
    """Loss and gradients of two steps from one seed (the second step's dropout follows the first's draws)."""
    torch.manual_seed(7)
    out = []
    for _ in range(2):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = supervised_loss(model, _batch(), head_path="fused", grad_filter=1e-6, bf16=bf16)
        loss.backward()
        out.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
        model.zero_grad()
    return out


@pytest.mark.parametrize("bf16", [False, True])
def test_checkpointed_layers_give_the_same_loss_and_gradients_bit_for_bit(tiny_model_dir, bf16):
    plain = _model(tiny_model_dir)
    checkpointed = copy.deepcopy(plain)
    assert checkpoint_layers(checkpointed, "all") == len(decoder_layers(checkpointed)) > 0
    expected, got = _two_steps(plain, bf16), _two_steps(checkpointed, bf16)
    for (loss, grads), (expected_loss, expected_grads) in zip(got, expected):
        assert torch.equal(loss, expected_loss)
        assert grads.keys() == expected_grads.keys() and grads
        for name, grad in grads.items():
            assert torch.equal(grad, expected_grads[name]), name
    assert not torch.equal(got[0][0], got[1][0])  # the two steps drew different dropout masks


def test_checkpointed_layers_keep_less_for_the_backward(tiny_model_dir):
    def saved_bytes(model):
        total = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: total.append(t.numel() * t.element_size()) or t,
                                                      lambda t: t):
            supervised_loss(model, _batch(), head_path="fused")
        return sum(total)

    plain = _model(tiny_model_dir)
    checkpointed = copy.deepcopy(plain)
    checkpoint_layers(checkpointed, 1)
    assert [layer.gradient_checkpointing for layer in decoder_layers(checkpointed)][:2] == [True, False]
    one = saved_bytes(checkpointed)
    checkpoint_layers(checkpointed, "all")
    assert saved_bytes(checkpointed) < one < saved_bytes(plain)
    assert checkpoint_layers(checkpointed, 0) == 0 and saved_bytes(checkpointed) == saved_bytes(plain)


def test_auto_checkpoints_the_fewest_layers_that_fit_the_budget():
    from types import SimpleNamespace

    from lawtune.training.checkpointing import auto_layers, layer_activation_mib

    # the default model's shape (Gemma 3 270M)
    gemma = SimpleNamespace(hidden_size=640, intermediate_size=2048, num_attention_heads=4, num_key_value_heads=1,
                            head_dim=256, num_hidden_layers=18)
    per_layer = layer_activation_mib(gemma, batch=4, longest=793, bf16=True, eager=True)
    assert 190 < per_layer < 210  # measured: 3.6 GB kept by 18 layers (docs/training.md "Memory")
    assert layer_activation_mib(gemma, 4, 793, bf16=True, eager=False) < per_layer
    layers = auto_layers(gemma, 4, 793, bf16=True, eager=True, budget_mib=1024)
    assert (18 - layers) * per_layer <= 1024 < (18 - layers + 1) * per_layer
    assert auto_layers(gemma, 1, 64, bf16=True, eager=True, budget_mib=1024) == 0  # short rows: nothing to do
    assert auto_layers(gemma, 64, 2048, bf16=False, eager=True, budget_mib=1024) == 18  # never more than it has


def test_config_takes_auto_all_or_a_count(tmp_path):
    from lawtune.errors import LawtuneError
    from lawtune.training.config import load_config

    config = tmp_path / "c.yaml"
    config.write_text("data_config:\n  train_file: t.jsonl\n", encoding="utf-8")
    assert load_config(config, []).speed.checkpoint_layers == "auto"
    assert load_config(config, ["speed.checkpoint_layers=all"]).speed.checkpoint_layers == "all"
    assert load_config(config, ["speed.checkpoint_layers=3"]).speed.checkpoint_layers == 3
    for bad in ("-1", "some"):
        with pytest.raises(LawtuneError, match="checkpoint_layers"):
            load_config(config, [f"speed.checkpoint_layers={bad}"])


def test_heap_trims_between_layers_leave_loss_and_gradients_bit_for_bit(tiny_model_dir, monkeypatch):
    import lawtune.memory
    from lawtune.training.callbacks import trim_between_layers

    calls = []
    real_trim = lawtune.memory.trim_heap
    monkeypatch.setattr(lawtune.memory, "trim_heap", lambda: calls.append(1) or real_trim())
    plain = _model(tiny_model_dir)
    trimmed = copy.deepcopy(plain)
    checkpoint_layers(trimmed, 1)
    checkpoint_layers(plain, 1)
    handles = trim_between_layers(trimmed)
    layers = len(decoder_layers(trimmed))
    assert len(handles) == 2 * layers
    expected, got = _two_steps(plain, True), _two_steps(trimmed, True)
    for (loss, grads), (expected_loss, expected_grads) in zip(got, expected):
        assert torch.equal(loss, expected_loss)
        for name, grad in grads.items():
            assert torch.equal(grad, expected_grads[name]), name
    # per step: before each layer's forward and when the gradient reaches each layer's output
    assert len(calls) == 2 * 2 * layers
    for handle in handles:
        handle.remove()
    calls.clear()
    _two_steps(trimmed, True)
    assert calls == []
    every_other = trim_between_layers(trimmed, every=2)  # the first layer of each two: here the first only
    _two_steps(trimmed, True)
    assert len(every_other) == 2 and len(calls) == 2 * 2
