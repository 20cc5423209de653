"""Fused LoRA linear layers: the same outputs and gradients as PEFT's forward, on the tiny Gemma 3 model."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from lawtune.training.dropout import use_sparse_dropout
from lawtune.training.fused_lora import use_fused_lora


def _peft_pair(tiny_model_dir, dropout: float):
    """(PEFT's model, a copy with fused layers), same weights; nonzero B so the adapters matter."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear"))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)
    use_sparse_dropout(model)  # both draw dropped positions the same way, so equal seeds give equal masks
    fused = copy.deepcopy(model)
    assert use_fused_lora(fused) == sum(1 for m in model.modules() if hasattr(m, "lora_A")) > 0
    return model.train(), fused.train()


def _loss_and_grads(model, seed: int, bf16: bool = False):
    input_ids = torch.arange(2, 26).reshape(2, 12)
    torch.manual_seed(seed)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=input_ids).logits
    loss = F.cross_entropy(logits.float()[:, :-1].flatten(0, 1), input_ids[:, 1:].flatten())
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    return loss.detach(), grads


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_same_loss_and_gradients_as_peft_in_float32(tiny_model_dir, dropout):
    model, fused = _peft_pair(tiny_model_dir, dropout)
    expected_loss, expected = _loss_and_grads(model, seed=3)
    loss, grads = _loss_and_grads(fused, seed=3)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=1e-6)
    assert grads.keys() == expected.keys() and len(grads) > 0
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-4, atol=1e-6, msg=name)
    if dropout:  # the masks matter: another seed gives another loss
        assert not torch.allclose(_loss_and_grads(fused, seed=4)[0], loss)


def test_under_bf16_autocast_close_to_peft_and_the_frozen_weight_is_cast_once(tiny_model_dir):
    model, fused = _peft_pair(tiny_model_dir, 0.1)
    expected_loss, expected = _loss_and_grads(model, seed=5, bf16=True)
    loss, grads = _loss_and_grads(fused, seed=5, bf16=True)
    torch.testing.assert_close(loss, expected_loss, rtol=2e-2, atol=2e-2)  # bf16 rounding in different places
    for name, grad in grads.items():
        assert grad.dtype == torch.float32
        assert F.cosine_similarity(grad.flatten(), expected[name].flatten(), dim=0) > 0.99, name
    layer = next(m for m in fused.modules() if hasattr(m, "lora_A"))
    cast = layer.base_layer._lawtune_cast[1]
    assert cast.dtype == torch.bfloat16
    _loss_and_grads(fused, seed=5, bf16=True)
    assert layer.base_layer._lawtune_cast[1] is cast  # kept between steps
    with torch.no_grad():
        layer.base_layer.weight.mul_(2)  # changed in place: cast again
    _loss_and_grads(fused, seed=5, bf16=True)
    assert layer.base_layer._lawtune_cast[1] is not cast
    assert "_lawtune_cast" not in "".join(fused.state_dict())


def test_other_calls_run_peft_forward(tiny_model_dir):
    model, fused = _peft_pair(tiny_model_dir, 0.0)
    input_ids = torch.arange(2, 14)[None]
    with torch.no_grad():  # generation / eval: PEFT's forward, identical output
        torch.testing.assert_close(fused(input_ids=input_ids).logits, model(input_ids=input_ids).logits, rtol=0, atol=0)
    fused.eval(), model.eval()
    torch.testing.assert_close(fused(input_ids=input_ids).logits, model(input_ids=input_ids).logits, rtol=0, atol=0)
    with fused.disable_adapter(), model.disable_adapter():
        fused.train(), model.train()
        torch.testing.assert_close(fused(input_ids=input_ids).logits, model(input_ids=input_ids).logits,
                                   rtol=0, atol=0)
    fused.merge_adapter()
    model.merge_adapter()
    torch.testing.assert_close(fused(input_ids=input_ids).logits, model(input_ids=input_ids).logits, rtol=1e-5, atol=1e-5)


def test_after_an_evaluation_the_cast_weights_are_paged_out_again(tiny_model_dir, monkeypatch):
    """A dev evaluation runs PEFT's forward, which reads the float32 weights training reads through casts; the
    TrimHeap callback pages them out again (on the default model they are views of the mapped safetensors)."""
    from lawtune.training import fused_lora
    from lawtune.training.callbacks import TrimHeap

    _, fused = _peft_pair(tiny_model_dir, 0.0)
    _loss_and_grads(fused, seed=1, bf16=True)  # training forward: every adapted layer casts its weight once
    cast = [m.weight for m in fused.modules() if getattr(m, "_lawtune_cast", None) is not None]
    assert cast
    asked = []
    monkeypatch.setattr(fused_lora, "page_out", lambda tensor: asked.append(tensor) or 4096)
    TrimHeap().on_evaluate(None, None, None, model=fused)
    assert len(asked) == len(cast) and all(any(a is c for c in cast) for a in asked)
    assert fused_lora.page_out_cast_weights(fused) == 4096 * len(cast)
