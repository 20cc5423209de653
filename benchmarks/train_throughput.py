"""Training throughput: lawtune train vs. a reference pipeline written the way ChatGLM3's finetune_demo works.

    .venv/bin/python benchmarks/train_throughput.py --steps 8             # default model
    .venv/bin/python benchmarks/train_throughput.py --steps 8 --no-checkpointing --compile --model DIR
    .venv/bin/python benchmarks/train_throughput.py --steps 8 --only lawtune --attn sdpa --checkpoint-layers 0

Both pipelines see exactly the same conversations (steps × 4 of them, one epoch, so every sample is used
once by each), the same tokenization and masks (ChatFormat.encode_example, 256/256 budgets), LoRA r8 on all
linear layers with dropout 0.05, batch 4, one process. They differ only in what lawtune changes:

  reference: what finetune_hf.py does: HF Trainer + PEFT, fp32, random order, DataCollatorForSeq2Seq padding
             to the longest in the batch, the model's own loss over full logits (every position × the whole
             vocabulary), and `model.gradient_checkpointing_enable()` + `enable_input_require_grads()`,
             which finetune_hf.py calls unconditionally (--no-checkpointing leaves them out).
  lawtune:   `lawtune.training.train.run` with its defaults: bf16 autocast only where the hardware has bf16;
             batches grouped by length; the output projection only at supervised positions, its backward
             filtered (speed.grad_filter); sparse LoRA dropout; decoder layers checkpointed as
             `speed.checkpoint_layers: auto` decides (--checkpoint-layers 0: none, lawtune's fastest).

Prints supervised tokens/s of each (supervised tokens / Trainer train_runtime) and the ratio, and the same per
CPU second of the process (steadier than wall time when other jobs share the machine); and how close each comes
to the hardware: model FLOPs per second (the work any implementation must do, benchmarks/matmul_peak.py) as a
fraction of the matmul peak measured at the start, in the pipeline's dtype and in the faster of fp32/bf16; and each
pipeline's own peak RSS (training and its dev loss, `lawtune.memory.Phases`). --attn and --no-fused-lora run lawtune
with another attention or PEFT's LoRA forward, to choose the defaults of a CPU (docs/training.md "Numbers"). Reads the
legal_advice data from /work/shared (benchmarks may; the product never does).
"""

from __future__ import annotations

import argparse
import os
import json
import tempfile
import time
from pathlib import Path

DATA = Path("/work/shared/data/raw/lawyer_llama/legal_advice.json")


def write_conversations(out: Path, count: int, skip: int) -> None:
    raw = json.loads(DATA.read_text(encoding="utf-8"))[skip: skip + count]
    with out.open("w", encoding="utf-8") as handle:
        for conversation in raw:
            messages = []
            for turn in conversation:
                question = "\n".join(p for p in (turn["instruction"], turn.get("input")) if p).strip()
                messages += [{"role": "user", "content": question}, {"role": "assistant", "content": turn["output"]}]
            handle.write(json.dumps({"conversations": messages}, ensure_ascii=False) + "\n")


def encode_file(model_dir: Path, path: Path):
    """(tokenizer, encoded examples) of a conversations file: the same chat format and 256/256 budgets for
    every pipeline and measure here."""
    from lawtune.data.conversations import read_examples
    from lawtune.modeling.chat import ChatFormat, load_template
    from lawtune.modeling.loading import load_tokenizer
    from lawtune.training.data import encode_rows

    tokenizer = load_tokenizer(model_dir)
    chat = ChatFormat(tokenizer, load_template("gemma"))
    return tokenizer, encode_rows([e.messages for e in read_examples(path, strict=False)], chat, 256, 256).examples


def dev_loss(model, model_dir: Path, dev: Path) -> float:
    """Mean cross-entropy of the supervised tokens of `dev`, float32, no dropout: the same measure for both."""
    import torch

    from lawtune.training.data import Collator
    from lawtune.training.loss import supervised_loss

    tokenizer, examples = encode_file(model_dir, dev)
    collate = Collator(tokenizer.pad_token_id)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), 4):
            loss, n = supervised_loss(model.float(), collate(examples[start:start + 4]))
            total, count = total + float(loss) * n, count + n
    return total / count


def reference(model_dir: Path, data: Path, steps: int, out: Path, checkpointing: bool = True,
              dev: Path | None = None) -> dict:
    """ChatGLM3 finetune_demo style: Trainer + PEFT, fp32, pad to longest, batch 4, model's own loss,
    gradient checkpointing on (as finetune_hf.py does)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForCausalLM, DataCollatorForSeq2Seq, Seq2SeqTrainingArguments, Trainer,
                              TrainerCallback)

    tokenizer, examples = encode_file(model_dir, data)
    collator = DataCollatorForSeq2Seq(tokenizer, padding="longest", return_tensors="pt", label_pad_token_id=-100)
    seen = {"supervised": 0, "positions": 0, "real": 0, "per_batch": [], "clock": []}

    class CpuClock(TrainerCallback):  # same measure as lawtune's metrics.jsonl `cpu_s`
        def on_train_begin(self, *args, **kwargs):
            seen["cpu_start"] = time.process_time()

        def on_step_end(self, *args, **kwargs):
            seen["clock"].append((time.monotonic(), time.process_time()))

        def on_train_end(self, *args, **kwargs):
            seen["cpu_s"] = time.process_time() - seen["cpu_start"]

    def collate(features):
        batch = collator([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features])
        seen["supervised"] += int((batch["labels"][:, 1:] != -100).sum())
        seen["per_batch"].append(int((batch["labels"][:, 1:] != -100).sum()))
        seen["positions"] += batch["input_ids"].numel()
        seen["real"] += int(batch["attention_mask"].sum())
        return batch

    torch.manual_seed(42)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    if checkpointing:  # finetune_hf.py calls both, unconditionally, right before building its Seq2SeqTrainer
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    args = Seq2SeqTrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=4, learning_rate=2e-4,
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True,
        remove_unused_columns=False, dataloader_pin_memory=False, seed=42,
    )
    result = Trainer(model=model, args=args, train_dataset=examples, data_collator=collate, callbacks=[CpuClock()]).train()
    runtime = result.metrics["train_runtime"]
    return {"dev_loss": dev_loss(model, model_dir, dev),"supervised_tokens": seen["supervised"], "train_runtime_s": runtime, "cpu_s": round(seen["cpu_s"], 1),
            "supervised_tokens_per_s": seen["supervised"] / runtime,
            "supervised_tokens_per_cpu_s": seen["supervised"] / seen["cpu_s"],
            "padding_share": 1 - seen["real"] / seen["positions"], **steady(seen)}


def training_flops(model_dir: Path, data: Path) -> float:
    """Model FLOPs of one pass over `data` (matmul_peak.step_model_flops), the same for both pipelines."""
    from matmul_peak import step_model_flops

    _, examples = encode_file(model_dir, data)
    supervised = sum(sum(label != -100 for label in example["labels"][1:]) for example in examples)
    return step_model_flops(model_dir, [len(example["input_ids"]) for example in examples], supervised)


def steady(seen: dict) -> dict:
    """Rates after the first step (warm-up, and torch.compile's one-off compilation for lawtune)."""
    (wall_1, cpu_1), (wall_n, cpu_n) = seen["clock"][0], seen["clock"][-1]
    tokens = sum(seen["per_batch"][1:len(seen["clock"])])
    return {"steady_tokens_per_s": tokens / (wall_n - wall_1), "steady_tokens_per_cpu_s": tokens / (cpu_n - cpu_1)}


def lawtune_train(model_dir: Path, data: Path, steps: int, out: Path, compile_layers: bool, bf16: str = "auto",
                  dev: Path | None = None, checkpoint_layers: str = "auto", attn: str | None = None,
                  fused_lora: bool = True, trim_heap_layers: int | None = None) -> dict:
    from lawtune.modeling.runs import RUN_INFO, read_metrics
    from lawtune.training.train import run

    config = out.parent / "bench.yaml"
    config.write_text(json.dumps({
        "data_config": {"train_file": str(data)},
        "max_input_length": 256, "max_output_length": 256,
        "training_args": {"output_dir": str(out), "max_steps": steps, "per_device_train_batch_size": 4,
                          "learning_rate": 2e-4, "logging_steps": 1, "save_strategy": "no", "seed": 42,
                          "bf16": bf16 if bf16 == "auto" else bf16 == "true"},
        "peft_config": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05},
        "model": {"name_or_path": str(model_dir), "compile": compile_layers, "attn_implementation": attn},
        "speed": {"checkpoint_layers": checkpoint_layers if checkpoint_layers in ("auto", "all") else int(checkpoint_layers),
                  "fused_lora": fused_lora,
                  **({"trim_heap_layers": trim_heap_layers} if trim_heap_layers is not None else {})},
    }))
    run_dir = run(config, resume="none")
    events = read_metrics(run_dir)
    final = [e for e in events if "train_runtime" in e][-1]
    steps_logged = [e for e in events if "loss" in e]
    first, last = steps_logged[0], steps_logged[-1]
    tokens = last["supervised_tokens"] - first["supervised_tokens"]
    info = json.loads((run_dir / RUN_INFO).read_text())
    from lawtune.modeling.loading import load_model

    return {"dev_loss": dev_loss(load_model(run_dir, adapter="final").model, model_dir, dev),"supervised_tokens": final["supervised_tokens"], "train_runtime_s": final["train_runtime"],
            "cpu_s": final["cpu_s"], "supervised_tokens_per_s": final["supervised_tokens"] / final["train_runtime"],
            "supervised_tokens_per_cpu_s": final["supervised_tokens"] / final["cpu_s"], "precision": info["precision"],
            "compile": compile_layers, "checkpointed_layers": info.get("checkpointed_layers"),
            "attention": info.get("attention"), "fused_lora": fused_lora,
            "steady_tokens_per_s": tokens / (last["elapsed_s"] - first["elapsed_s"]),
            "steady_tokens_per_cpu_s": tokens / (last["cpu_s"] - first["cpu_s"])}


def main() -> None:
    from lawtune.modeling.runs import resolve_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="imported model name or HF folder")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--skip", type=int, default=0, help="start at this conversation of legal_advice.json")
    parser.add_argument("--only", choices=["reference", "lawtune"], default=None)
    parser.add_argument("--bf16", choices=["auto", "true", "false"], default="auto",
                        help="lawtune's bf16 autocast (auto: where the CPU has AVX512-BF16/AMX)")
    parser.add_argument("--compile", action="store_true", help="lawtune with model.compile (torch.compile of the layers)")
    parser.add_argument("--checkpoint-layers", default="auto",
                        help="lawtune's speed.checkpoint_layers: auto (default), all, or a number (0: none)")
    parser.add_argument("--attn", choices=["eager", "sdpa"], default=None,
                        help="lawtune's model.attn_implementation (default: what lawtune picks for this CPU)")
    parser.add_argument("--no-fused-lora", action="store_true", help="lawtune with speed.fused_lora: false")
    parser.add_argument("--trim-heap-layers", type=int, default=None,
                        help="lawtune's speed.trim_heap_layers (default: the config default; 0: trim only after steps)")
    parser.add_argument("--no-checkpointing", action="store_true",
                        help="reference without the gradient checkpointing finetune_hf.py turns on")
    options = parser.parse_args()
    from decoding_sweep import cpu_flags  # benchmarks/ is on sys.path when a script in it runs

    print(f"CPU flags {cpu_flags()}, {os.cpu_count()} CPUs, lawtune bf16: {options.bf16} "
          f"(the run's precision is printed below), load average now {os.getloadavg()[0]:.1f}", flush=True)
    from matmul_peak import describe, measured_peaks

    peaks = measured_peaks(True if options.bf16 == "true" else None)
    import torch

    print(f"measured matmul peak ({torch.get_num_threads()} threads): {describe(peaks)}", flush=True)
    model_dir = resolve_model_path(options.model)
    from lawtune.memory import Phases, release_memory

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.jsonl"
        write_conversations(data, options.steps * 4, options.skip)
        flops = training_flops(model_dir, data)
        dev = Path(tmp) / "dev.jsonl"  # the 16 conversations after the training ones, held out from both
        write_conversations(dev, 16, options.skip + options.steps * 4)
        results = {}
        phases = Phases()  # each pipeline's own peak RSS (training + its dev loss), printed with its results
        if options.only in (None, "reference"):
            started = time.monotonic()
            with phases("reference"):
                results["reference"] = reference(model_dir, data, options.steps, Path(tmp) / "ref",
                                                 checkpointing=not options.no_checkpointing, dev=dev)
            results["reference"]["peak_rss_mib"] = round(phases.done[-1].peak_mib)
            release_memory()
            print(f"reference: {json.dumps(results['reference'])} ({time.monotonic() - started:.0f} s)", flush=True)
        if options.only in (None, "lawtune"):
            started = time.monotonic()
            with phases("lawtune"):
                results["lawtune"] = lawtune_train(model_dir, data, options.steps, Path(tmp) / "run",
                                                   compile_layers=options.compile, bf16=options.bf16, dev=dev,
                                                   checkpoint_layers=options.checkpoint_layers, attn=options.attn,
                                                   fused_lora=not options.no_fused_lora,
                                                   trim_heap_layers=options.trim_heap_layers)
            results["lawtune"]["peak_rss_mib"] = round(phases.done[-1].peak_mib)
            print(f"lawtune:   {json.dumps(results['lawtune'])} ({time.monotonic() - started:.0f} s)", flush=True)
    if len(results) == 2:
        for key, unit in (("supervised_tokens_per_s", "wall s (whole run)"), ("supervised_tokens_per_cpu_s", "CPU s (whole run)"),
                          ("steady_tokens_per_s", "wall s after step 1"), ("steady_tokens_per_cpu_s", "CPU s after step 1")):
            ref, ours = results["reference"][key], results["lawtune"][key]
            print(f"supervised tokens per {unit}: reference {ref:.1f}, lawtune {ours:.1f}, ratio {ours / ref:.2f}x")
    for name, result in results.items():
        dtype = "bfloat16" if result.get("precision", "fp32").startswith("bf16") else "float32"
        achieved = flops / result["train_runtime_s"] / 1e9
        print(f"{name}: {achieved:.0f} model GFLOP/s (whole run) = {100 * achieved / peaks[dtype]:.0f} % of the "
              f"{dtype} matmul peak, {100 * achieved / max(peaks.values()):.0f} % of the best dtype's")
    if len(results) == 2:
        ref, ours = results["reference"]["dev_loss"], results["lawtune"]["dev_loss"]
        print(f"dev loss after {options.steps} steps (16 held-out conversations, float32): reference {ref:.4f}, "
              f"lawtune {ours:.4f} ({100 * (ours - ref) / ref:+.2f} %)")


if __name__ == "__main__":
    main()
