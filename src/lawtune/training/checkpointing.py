"""Activation checkpointing of decoder layers: keep a layer's input, recompute its inside in the backward.

    count = checkpoint_layers(peft_model, "all")    # every decoder layer; or an int: the first N layers
    count = checkpoint_layers(peft_model, auto_layers(model.config, batch=4, longest=793, bf16=True, eager=True))

Why: a training step keeps every decoder layer's intermediate tensors for the backward. On the default model
(18 layers) a batch of 4 × 793 tokens under bf16 autocast kept 3.8 GB of them (eager attention's
probabilities 1.0 GB, the MLP's 2048-wide tensors 0.9 GB, the residual stream's norm inputs 0.6 GB, the
LoRA inputs 0.35 GB, queries / keys / values 0.56 GB): most of the 9.8 GB `lawtune demo` peaked at. A
checkpointed layer keeps only its input (4 × 793 × 640 floats, 7.7 MiB) and runs its forward again during the
backward, one layer at a time; the cost is that second forward of the layers (the output head is not redone).

Exact: `torch.utils.checkpoint` (non-reentrant) restores the random number generator's state before the
recompute, so LoRA dropout drops the same positions, and autocast's state; the recomputed tensors are the
same operations on the same inputs, so losses and gradients equal an unchecked run's bit for bit
(tests/training/test_checkpointing.py; docs/training.md "Memory").
"""

from __future__ import annotations

import functools
import math
from typing import Any

from torch import nn

# What a decoder layer keeps for the backward, measured on the default model (Gemma 3 270M, batch 4 × 793 tokens,
# torch's saved-tensor hooks, docs/training.md "Memory"): bytes per token per unit of width, where the width is
# hidden + intermediate + (heads + 2 × kv heads) × head_dim (the tensors a layer keeps are these wide), and bytes per
# element of the (batch × heads × T × T) attention probabilities that eager attention keeps (float32 softmax, plus
# its bf16 copy under autocast). Tuned on that one model; other models get an estimate of the same form.
BYTES_PER_TOKEN_WIDTH = {"bf16": 11.1, "fp32": 18.1}
EAGER_BYTES_PER_SCORE = {"bf16": 6, "fp32": 4}
# "auto" checkpoints the fewest layers that keep the rest's activations under this. Tuned on: `lawtune demo`
# (configs/demo.yaml, its longest batch 4 × 793 tokens: ~200 MiB a layer), whose peak must stay under 4 GB beside
# the float32 model, the bf16 weight copies and the loss head's buffers (~2.7 GiB together): 3 steps peaked at
# 4,747 MiB with 1 GiB kept (13 of 18 layers checkpointed), 4,192 MiB with none (docs/training.md "Memory").
ACTIVATION_BUDGET_MIB = 256


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The model's repeated blocks that transformers can checkpoint (its GradientCheckpointingLayer modules)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [module for module in model.modules() if isinstance(module, GradientCheckpointingLayer)]


def layer_activation_mib(config: Any, batch: int, longest: int, bf16: bool, eager: bool) -> float:
    """Estimated MiB one decoder layer keeps for the backward, for a batch of `batch` rows of `longest` tokens."""
    precision = "bf16" if bf16 else "fp32"
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    width = config.hidden_size + config.intermediate_size + (heads + 2 * kv_heads) * head_dim
    kept = batch * longest * width * BYTES_PER_TOKEN_WIDTH[precision]
    if eager:
        kept += batch * heads * longest * longest * EAGER_BYTES_PER_SCORE[precision]
    return kept / 2**20


def auto_layers(config: Any, batch: int, longest: int, bf16: bool, eager: bool,
                budget_mib: float = ACTIVATION_BUDGET_MIB) -> int:
    """The fewest layers to checkpoint so that the others' activations fit `budget_mib` (0 when all fit)."""
    layers = config.num_hidden_layers
    per_layer = layer_activation_mib(config, batch, longest, bf16, eager)
    over = layers * per_layer - budget_mib
    return 0 if over <= 0 else min(layers, math.ceil(over / per_layer))


def checkpoint_layers(model: nn.Module, layers: int | str) -> int:
    """Checkpoint the first `layers` decoder layers ("all": every one; 0: none); returns how many are.

    A model without transformers' checkpointable layers (some remote-code models) is left as it is: 0."""
    import torch.utils.checkpoint

    blocks = decoder_layers(model)
    count = len(blocks) if layers == "all" else min(int(layers), len(blocks))
    # non-reentrant: works with inputs that need no grad (frozen embeddings) and keeps autocast and RNG state
    function: Any = functools.partial(torch.utils.checkpoint.checkpoint, use_reentrant=False, preserve_rng_state=True)
    for index, block in enumerate(blocks):
        block.gradient_checkpointing = index < count
        block._gradient_checkpointing_func = function
    return count
