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
    while time.monotonic() < deadline:
        started = time.perf_counter()
        for _ in range(10):
            torch.mm(a, b, out=out)
        best = max(best, 10 * 2 * rows * 640 * 2048 / (time.perf_counter() - started) / 1e9)
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


def main() -> None:
    import torch

    print(f"{torch.get_num_threads()} threads: fp32 {peak_gflops('float32'):.0f} GFLOP/s, "
          f"bf16 {peak_gflops('bfloat16'):.0f} GFLOP/s")


if __name__ == "__main__":
    main()
