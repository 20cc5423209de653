"""How close a training run comes to the CPU: model FLOPs of a LoRA step against the measured matmul peak.

    .venv/bin/python benchmarks/matmul_peak.py            # prints this machine's fp32 and bf16 matmul peaks

Used by train_throughput.py for its "fraction of peak" column. The model FLOPs are those any implementation
of the step must do, counted from the model's shape (as MFU counts them), not what a pipeline happens to run:

  frozen layers:  forward 2·P per token, input-gradient backward 2·P per token (no weight gradient: LoRA)
  attention:      forward 2·L·n_heads·head_dim per token of a length-L sequence (causal: half of 4·L·…),
                  backward twice that
  output head:    forward 2·V·H per supervised token (the softmax needs every logit), backward 2·V·H

where P = the decoder layers' linear weights, V × H the output projection. LoRA's own matmuls (rank 8) are
under 1 % and left out. So gradient checkpointing's recomputation, full logits at unsupervised positions,
padding or a filtered head backward neither add nor remove model FLOPs: a pipeline that does extra work shows
a lower fraction of the peak, one that skips work (the filtered head) a higher one.
"""

from __future__ import annotations

import time
from pathlib import Path


def peak_gflops(dtype_name: str, rows: int = 512, seconds: float = 1.0) -> float:
    """Best GFLOP/s of a (rows × 640) @ (640 × 2048) matmul — the default model's MLP projection at a
    training batch's token count — in this dtype, with torch's current thread count."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(rows, 640).to(dtype), torch.randn(640, 2048).to(dtype)
    out = torch.empty(rows, 2048, dtype=dtype)
    best, deadline = 0.0, time.monotonic() + seconds
    torch.mm(a, b, out=out)  # warm-up: oneDNN's kernel selection
    calls = 1  # the first reading is one call: bf16 without hardware bf16 (AVX2 only) takes over a second a call
    while best == 0.0 or time.monotonic() < deadline:
        started = time.perf_counter()
        for _ in range(calls):
            torch.mm(a, b, out=out)
        best = max(best, calls * 2 * rows * 640 * 2048 / (time.perf_counter() - started) / 1e9)
        calls = 10
    return best


def step_model_flops(model_dir: Path, lengths: list[int], supervised: int) -> float:
    """Model FLOPs of forward + backward over sequences of these real lengths with `supervised` targets."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    config = getattr(config, "text_config", config)
    hidden, heads = config.hidden_size, config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv_heads = getattr(config, "num_key_value_heads", heads)
    per_layer = (hidden * heads * head_dim * 2  # q and o projections
                 + hidden * kv_heads * head_dim * 2  # k and v
                 + hidden * config.intermediate_size * 3)  # gate, up, down
    linear_params = per_layer * config.num_hidden_layers
    tokens = sum(lengths)
    attention = sum(2 * length * length * heads * head_dim for length in lengths) * config.num_hidden_layers
    return 4 * linear_params * tokens + 3 * attention + 4 * config.vocab_size * hidden * supervised


def measured_peaks(bf16: bool | None = None) -> dict[str, float]:
    """The fp32 peak, and the bf16 one where it means something: with hardware bf16 (AVX512-BF16/AMX, or `bf16=True`).
    Without it torch emulates bf16 matmuls (AVX2-only EPYC: ~0.1 GFLOP/s at this shape, over 10 s a reading)."""
    from lawtune.modeling.loading import bf16_supported

    peaks = {"float32": peak_gflops("float32")}
    if bf16 if bf16 is not None else bf16_supported():
        peaks["bfloat16"] = peak_gflops("bfloat16")
    return peaks


def describe(peaks: dict[str, float]) -> str:
    bf16 = f"{peaks['bfloat16']:.0f} GFLOP/s" if "bfloat16" in peaks else "not measured (no hardware bf16: emulated)"
    return f"fp32 {peaks['float32']:.0f} GFLOP/s, bf16 {bf16}"


def main() -> None:
    import torch

    print(f"{torch.get_num_threads()} threads: {describe(measured_peaks())}")


if __name__ == "__main__":
    main()
