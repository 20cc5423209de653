"""Do the GGUF exports of a real run answer as lawtune does? First N greedy tokens of 5 prompts, per file.

    .venv/bin/python benchmarks/export_gguf_check.py runs/full --gguf out/export/gguf --lora out/export/lora

For each GGUF file of `--gguf` (the merged model: f16, and the quantized ones found there) and for the base +
LoRA pair of `--lora`, llama.cpp (llama-cpp-python, f32 KV cache) generates N tokens greedily from the same
prompt token ids as lawtune (`load_model(RUN, merge=True)`, float32, plain argmax, no penalties, no stop), and
the script prints how many of the N tokens agree. Where they part, it prints lawtune's logit margin there
(top-1 minus top-2): a small margin means rounding (f16 weights, re-quantization) can flip the choice, a
large one means a real difference. `--quantize Q8_0` also writes that type next to model-f16.gguf first.

`--repack` keeps llama.cpp's CPU weight repacking on. It is off by default: on CPUs with AMX (Sapphire Rapids
class, like some of this project's machines) llama.cpp repacks quantized weights into an AMX buffer and
segfaults in the first inference (llama.cpp issue 20824, also seen with llama-cli and Ollama); f16 files are
not affected. llama-cpp-python has no argument for it, so the model-parameter default is wrapped here.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

PROMPTS = ["公司拖欠工资怎么办？", "离婚需要什么材料？", "交通事故对方全责，我能要求哪些赔偿？",
           "劳动合同到期公司不续签，有经济补偿吗？", "借给朋友的钱不还，没有借条怎么办？"]


def lawtune_greedy(model, ids: list[int], n: int) -> tuple[list[int], list[float]]:
    """Greedy tokens and, at each step, the margin between the two best logits."""
    tokens, margins = [], []
    with torch.inference_mode():
        past, current = None, torch.tensor([ids])
        for _ in range(n):
            out = model(current, past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[0, -1]
            top = torch.topk(logits, 2)
            tokens.append(int(top.indices[0]))
            margins.append(float(top.values[0] - top.values[1]))
            current = top.indices[:1].view(1, 1)
    return tokens, margins


def llama_greedy(llm, ids: list[int], n: int) -> list[int]:
    llm.reset()
    tokens = []
    for token in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0):
        tokens.append(int(token))
        if len(tokens) == n:
            break
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--gguf", type=Path, help="a `--to gguf` export folder")
    parser.add_argument("--lora", type=Path, help="a `--to gguf-lora` export folder")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--quantize", nargs="*", default=[], help="also write these types from model-f16.gguf first")
    parser.add_argument("--repack", action="store_true", help="keep llama.cpp's CPU weight repacking (AMX: crashes)")
    args = parser.parse_args()

    import llama_cpp.llama_cpp as bindings  # the module llama_cpp.Llama reads its defaults from
    from llama_cpp import Llama

    if not args.repack:
        defaults = bindings.llama_model_default_params

        def no_repack():
            params = defaults()
            params.use_extra_bufts = False
            return params

        bindings.llama_model_default_params = no_repack  # what llama-cli's --no-repack sets

    from lawtune.export.gguf import quantize
    from lawtune.modeling.chat import ChatFormat
    from lawtune.modeling.loading import load_model, load_tokenizer
    from lawtune.modeling.runs import read_run

    for qtype in args.quantize:
        target = args.gguf / f"model-{qtype}.gguf"
        if not target.is_file():
            started = time.perf_counter()
            quantize(args.gguf / "model-f16.gguf", target, qtype)
            print(f"quantized {target.name} in {time.perf_counter() - started:.1f} s")

    # llama.cpp first, then the reference model (one large model in memory at a time)
    run = read_run(args.run)
    chat = ChatFormat(load_tokenizer(run.tokenizer_dir), run.template)
    prompts = [chat.encode_prompt([{"role": "user", "content": p}]) for p in PROMPTS]
    candidates = []
    if args.gguf:
        candidates += [(f.name, {"model_path": str(f)}) for f in sorted(args.gguf.glob("model-*.gguf"))]
    if args.lora:
        base, lora = next(args.lora.glob("base-*.gguf")), next(args.lora.glob("adapter-*.gguf"))
        candidates.append((f"{base.name} + {lora.name}", {"model_path": str(base), "lora_path": str(lora)}))
    results = {}
    for name, files in candidates:
        llm = Llama(n_ctx=512, n_threads=2, verbose=False, **files)
        started = time.perf_counter()
        got = [llama_greedy(llm, ids, args.tokens) for ids in prompts]
        speed = args.tokens * len(prompts) / (time.perf_counter() - started)
        answer = None
        if "lora_path" not in files:  # the file's own chat template, lawtune's default penalty
            answer = llm.create_chat_completion([{"role": "user", "content": PROMPTS[0]}], temperature=0,
                                                max_tokens=128, repeat_penalty=1.2)["choices"][0]
        size = sum(Path(p).stat().st_size for p in files.values()) / 2**20
        results[name] = (got, speed, answer, size)
        del llm

    loaded = load_model(args.run, merge=True)
    reference = [lawtune_greedy(loaded.model, ids, args.tokens) for ids in prompts]
    for name, (got_all, speed, answer, size) in results.items():
        print(f"\n{name} ({size:.0f} MiB, {speed:.0f} tokens/s)")
        agree_total = 0
        for prompt, got, (expected, margins) in zip(PROMPTS, got_all, reference):
            same = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), len(expected))
            agree_total += same == len(expected)
            where = ("all equal" if same == len(expected) else
                     f"first difference at token {same}: lawtune {expected[same]} "
                     f"({loaded.tokenizer.decode([expected[same]])!r}) vs llama.cpp {got[same]} "
                     f"({loaded.tokenizer.decode([got[same]])!r}); lawtune's logit margin there {margins[same]:.3f} "
                     f"(median margin over the {args.tokens} tokens {np.median(margins):.2f})")
            print(f"  {prompt}  {same}/{len(expected)} equal — {where}")
        print(f"  prompts with all {args.tokens} tokens equal: {agree_total}/{len(PROMPTS)}")
        if answer:
            print(f"  chat API, repeat_penalty 1.2 ({answer['finish_reason']}): {answer['message']['content'][:200]!r}")


if __name__ == "__main__":
    main()
