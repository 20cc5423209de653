"""A LoRA linear layer's training forward and backward as one autograd node.

    fused = use_fused_lora(peft_model)     # every plain LoRA Linear of the model; returns how many

PEFT computes an adapted layer as `base(x) + lora_B(lora_A(dropout(x))) * scaling`: under bf16 autocast that
is about eight small operations forward (a dropout mask as large as x, x cast to bf16 twice, two thin matmuls,
the scaling, the add) and a dozen backward. On the default model LoRA's arithmetic is under 1 % of a step's
FLOPs, yet LoRA on all seven linear layers took a quarter of a training step (the same 8 batches, 2 cores:
26.2 s with all seven adapted, 20.5 s with q_proj alone).

The fused node computes the same function with fewer passes over memory:

  forward:   xb = x in the compute dtype, cast once for the frozen projection and the adapter; the frozen
             weight in the compute dtype, cast once for the whole run (autocast casts it on every call);
             xd = xb · 1/(1-p) with the dropped positions zeroed (drawn as positions, `dropout.dropped_positions`:
             the distribution of nn.Dropout's mask, no mask tensor); u = xd Aᵀ (n × r);
             y = xb Wᵀ (+ bias) + u (s·B)ᵀ, the second product added into the first (addmm).
  backward:  gu = g (s·B); dB = s·(uᵀ g)ᵀ; dA = guᵀ xd; dx = g W + (gu A) with the dropped positions zeroed
             and scaled — the weight gradients in the layouts the CPU's matmul runs fastest (a thin operand
             first), computed in the compute dtype and returned in the adapters' float32.

The compute dtype is autocast's where autocast is on (bf16 on CPUs with AVX512-BF16/AMX), else the frozen
weight's. Only the plain case takes this path: training mode, gradients on, one active vanilla LoRA adapter
(no DoRA or other variant), not merged, a linear base layer whose bias (if any) is frozen, adapters without
bias, dropout that is nn.Dropout, SparseDropout or none; anything else runs PEFT's own forward. Parameters
and their names do not change, so adapters save and load as before and DDP's hooks see the same tensors.
tests/training/test_fused_lora.py checks outputs and all gradients against PEFT's forward.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn

from lawtune.memory import page_out
from lawtune.training.dropout import SparseDropout, dropped_positions


class _FusedLoraLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling, dropped, keep_scale, dtype):  # noqa: D102
        with torch.autocast(x.device.type, enabled=False):
            rows = x.reshape(-1, x.shape[-1]).to(dtype)
            frozen, adapter_a, adapter_b = weight.to(dtype), lora_a.to(dtype), (lora_b * scaling).to(dtype)
            dropped_in = rows
            if dropped is not None:
                dropped_in = rows * keep_scale
                dropped_in.view(-1)[dropped] = 0
            low_rank = dropped_in @ adapter_a.T  # (n, r)
            out = torch.mm(rows, frozen.T) if bias is None else torch.addmm(bias.to(dtype), rows, frozen.T)
            out.addmm_(low_rank, adapter_b.T)
        ctx.save_for_backward(dropped_in, low_rank, frozen, adapter_a, adapter_b)
        ctx.dropped, ctx.keep_scale, ctx.scaling = dropped, keep_scale, scaling
        ctx.x_shape, ctx.x_dtype, ctx.a_dtype, ctx.b_dtype = x.shape, x.dtype, lora_a.dtype, lora_b.dtype
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        dropped_in, low_rank, frozen, adapter_a, adapter_b = ctx.saved_tensors
        grad_x = grad_a = grad_b = None
        with torch.autocast(grad_out.device.type, enabled=False):
            grad = grad_out.reshape(-1, grad_out.shape[-1]).to(frozen.dtype)
            grad_low = grad @ adapter_b  # (n, r); adapter_b already holds the scaling
            if ctx.needs_input_grad[4]:
                grad_b = (low_rank.T @ grad).T.to(ctx.b_dtype).mul_(ctx.scaling)
            if ctx.needs_input_grad[3]:
                grad_a = (grad_low.T @ dropped_in).to(ctx.a_dtype)
            if ctx.needs_input_grad[0]:
                through_adapter = grad_low @ adapter_a  # (n, in)
                if ctx.dropped is not None:
                    through_adapter.mul_(ctx.keep_scale).view(-1)[ctx.dropped] = 0
                grad_x = torch.addmm(through_adapter, grad, frozen).view(ctx.x_shape).to(ctx.x_dtype)
        return grad_x, None, None, grad_a, grad_b, None, None, None, None


def _plain_adapter(layer: Any, x: torch.Tensor, args: tuple, kwargs: dict) -> str | None:
    """The one active adapter when this call can take the fused path, else None."""
    if args or kwargs or not layer.training or not torch.is_grad_enabled() or x.dim() < 2:
        return None
    if layer.disable_adapters or layer.merged or len(layer.active_adapters) != 1:
        return None
    name = layer.active_adapters[0]
    if name not in layer.lora_A or name in getattr(layer, "lora_variant", {}):
        return None
    base = layer.base_layer
    if type(base) is not nn.Linear or base.weight.requires_grad or (base.bias is not None and base.bias.requires_grad):
        return None
    lora_a, lora_b = layer.lora_A[name], layer.lora_B[name]
    if type(lora_a) is not nn.Linear or type(lora_b) is not nn.Linear or lora_a.bias is not None or lora_b.bias is not None:
        return None
    if not isinstance(layer.lora_dropout[name], (nn.Dropout, SparseDropout, nn.Identity)):
        return None
    return name


def _fused_forward(layer: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    name = _plain_adapter(layer, x, args, kwargs)
    if name is None:
        return type(layer).forward(layer, x, *args, **kwargs)
    device = x.device.type
    base = layer.base_layer
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else base.weight.dtype
    p = getattr(layer.lora_dropout[name], "p", 0.0)
    dropped = dropped_positions(x.numel(), p, x.device) if p > 0 else None
    return _FusedLoraLinear.apply(x, _frozen_cast(base, dtype), base.bias, layer.lora_A[name].weight,
                                  layer.lora_B[name].weight, layer.scaling[name], dropped, 1.0 / (1.0 - p), dtype)


def _frozen_cast(base: nn.Linear, dtype: torch.dtype) -> torch.Tensor:
    """The frozen weight in the compute dtype, cast once and kept on the layer (again if the weight changes
    in place, moves or the dtype changes). Autocast casts it on every call: 100M parameters per step."""
    weight = base.weight
    if weight.dtype == dtype:
        return weight
    cached = getattr(base, "_lawtune_cast", None)
    if cached is None or cached[0] != (weight._version, weight.device, dtype, weight.data_ptr()):
        cached = ((weight._version, weight.device, dtype, weight.data_ptr()), weight.detach().to(dtype))
        base._lawtune_cast = cached  # a plain attribute: not a parameter or buffer, never saved
        page_out(weight)  # training reads the cast from now on; a file-mapped weight leaves the RSS until read again
    return cached[1]


def page_out_cast_weights(model: nn.Module) -> int:
    """Page out again the frozen weights that training reads through their casts (`_frozen_cast`); returns the
    bytes asked for. A dev evaluation runs PEFT's own forward, whose autocast reads every float32 weight
    (~400 MiB on the default model): without this their pages stayed resident for the rest of training."""
    return sum(page_out(module.weight) for module in model.modules() if getattr(module, "_lawtune_cast", None) is not None)


def use_fused_lora(model: nn.Module) -> int:
    """Give every PEFT LoRA `Linear` the fused training forward (other calls fall through to PEFT's)."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    fused = 0
    for module in model.modules():
        if type(module) is LoraLinear:
            module.forward = types.MethodType(_fused_forward, module)
            fused += 1
    return fused
