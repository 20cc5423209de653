"""SparseDropout: nn.Dropout's distribution from one random draw per dropped element; swapped into PEFT's LoRA."""

from __future__ import annotations

import pytest
import torch

from lawtune.training.dropout import SparseDropout, dropped_positions, use_sparse_dropout


def test_positions_are_sorted_unique_in_range_at_the_right_rate():
    torch.manual_seed(0)
    rates = []
    for _ in range(20):
        positions = dropped_positions(50_000, 0.05, torch.device("cpu"))
        assert positions.numel() == 0 or (0 <= int(positions.min()) and int(positions.max()) < 50_000)
        assert torch.equal(positions, positions.unique())
        rates.append(positions.numel() / 50_000)
    # 20 × 50k Bernoulli(0.05) draws: standard error of the mean rate is ~0.0002
    assert abs(sum(rates) / len(rates) - 0.05) < 0.001
    assert dropped_positions(10, 0.5, torch.device("cpu")).numel() <= 10


def test_every_position_is_equally_likely():
    torch.manual_seed(1)
    counts = torch.zeros(64)
    for _ in range(4000):
        counts[dropped_positions(64, 0.1, torch.device("cpu"))] += 1
    # each count ~ Binomial(4000, 0.1): mean 400, sd 19; the first and last positions are not special
    assert ((counts - 400).abs() < 100).all()


def test_train_mode_scales_eval_mode_is_identity_and_gradient_follows_the_mask():
    torch.manual_seed(2)
    dropout = SparseDropout(0.2)
    x = torch.ones(200, 300, requires_grad=True)
    y = dropout(x)
    assert set(torch.unique(y).tolist()) == {0.0, 1.25}
    assert abs(float(y.mean()) - 1.0) < 0.02
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x * mask)/dx = mask
    dropout.eval()
    assert dropout(x) is x
    assert SparseDropout(0.0).train()(x) is x
    with pytest.raises(ValueError):
        SparseDropout(1.0)


def test_swaps_every_lora_dropout_of_a_peft_model(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_dropout=0.1, target_modules="all-linear"))
    lora_layers = [m for m in model.modules() if hasattr(m, "lora_A")]
    assert use_sparse_dropout(model) == len(lora_layers) > 0
    assert all(isinstance(m.lora_dropout["default"], SparseDropout) for m in lora_layers)
    assert use_sparse_dropout(model) == 0  # idempotent
