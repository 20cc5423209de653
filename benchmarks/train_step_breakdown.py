"""What each of lawtune's training-step changes buys: supervised tokens/s of forward + backward, one process.

    .venv/bin/python benchmarks/train_step_breakdown.py            # default model, 32 legal_advice conversations

The same model and LoRA (r8 all-linear, dropout 0.05), the same batches of 4 conversations sorted by length
(so padding is the same for every variant), not compiled, sdpa attention until variant 6, float32 until 7. Each variant makes two passes over the batches and
reports the second (the first pays one-off allocation and warm-up costs, which would favour later variants):

  1. sliced logits + exact F.cross_entropy, PEFT's nn.Dropout      (lawtune before speed:)
  2. + SparseDropout                                                (speed.sparse_dropout)
  3. + fused head, exact gradient                                   (speed.grad_filter: 0)
  4. + gradient filter 1e-6                                         (the default)
  5. + fused LoRA layers                                            (speed.fused_lora)
  6. + eager attention instead of sdpa                              (model.attn_implementation on a CPU)
  7. + bf16 autocast, only where the CPU has AVX512-BF16/AMX        (bf16: auto)

Reads legal_advice.json from /work/shared (benchmarks may; the product never does).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from train_throughput import encode_file, write_conversations


def main() -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lawtune.modeling.runs import resolve_model_path
    from lawtune.training.data import Collator
    from lawtune.modeling.loading import bf16_supported
    from lawtune.training.dropout import use_sparse_dropout
    from lawtune.training.fused_lora import use_fused_lora
    from lawtune.training.loss import supervised_loss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="imported model name or HF folder")
    parser.add_argument("--conversations", type=int, default=32)
    options = parser.parse_args()

    from decoding_sweep import cpu_flags  # benchmarks/ is on sys.path when a script in it runs

    print(f"CPU flags {cpu_flags()}, {torch.get_num_threads()} threads; float32 unless a row says bf16", flush=True)
    model_dir = resolve_model_path(options.model)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.jsonl"
        write_conversations(data, options.conversations, 0)
        tokenizer, examples = encode_file(model_dir, data)
    examples.sort(key=lambda example: len(example["input_ids"]))
    collate = Collator(tokenizer.pad_token_id)
    batches = [collate(examples[i:i + 4]) for i in range(0, len(examples), 4)]

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    model.train()

    def rate(head_path: str, grad_filter: float, bf16: bool = False) -> float:
        for _ in range(2):  # the second pass is the one returned
            tokens, seconds = 0, 0.0
            for batch in batches:
                started = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss, count = supervised_loss(model, batch, head_path=head_path, grad_filter=grad_filter)
                loss.backward()
                seconds += time.perf_counter() - started
                tokens += count
            model.zero_grad()
        return tokens / seconds

    results = [("sliced logits, exact cross-entropy, nn.Dropout", rate("sliced", 0.0))]
    use_sparse_dropout(model)
    results.append(("+ sparse LoRA dropout", rate("sliced", 0.0)))
    results.append(("+ fused head, exact gradient", rate("fused", 0.0)))
    results.append(("+ gradient filter 1e-6 (default)", rate("fused", 1e-6)))
    use_fused_lora(model)
    results.append(("+ fused LoRA layers (speed.fused_lora)", rate("fused", 1e-6)))
    model.set_attn_implementation("eager")
    results.append(("+ eager attention (the CPU default)", rate("fused", 1e-6)))
    if bf16_supported():
        results.append(("+ bf16 autocast (bf16: auto on this CPU)", rate("fused", 1e-6, bf16=True)))
    first = results[0][1]
    for name, value in results:
        print(f"{name:50s} {value:6.1f} supervised tokens/s  ({value / first:.2f}x)")


if __name__ == "__main__":
    main()
