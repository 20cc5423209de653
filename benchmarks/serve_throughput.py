"""Serving throughput: lawtune's engines vs a serialized reference and vs llama.cpp's own server.

    .venv/bin/python benchmarks/serve_throughput.py                    # default model, N = 1, 4, 8, 16 clients
    .venv/bin/python benchmarks/serve_throughput.py --model runs/demo --clients 1 8 --new-tokens 32
    .venv/bin/python benchmarks/serve_throughput.py --engines llama.cpp --no-serialized   # a quick look
    .venv/bin/python benchmarks/serve_throughput.py --kb kb.sqlite --clients 1 8 --no-serialized   # open-book prompts

Servers, each a real subprocess on loopback, one after another:
- `lawtune (torch)`: `lawtune serve` on transformers (bfloat16 with hardware bf16, else float32);
- `lawtune (llama.cpp)`: `lawtune serve --engine llama.cpp`, the same scheduler on llama.cpp's forward pass
  over the GGUF (the default model: its own Q4_K_M file; a run: its merged GGUF at --gguf-quant);
- `serialized`: the torch server with `--max-batch-size 1` (one request at a time, as ChatGLM3's and
  LLaMA-Factory's API servers answer);
- `llama.cpp server`: llama-cpp-python's OpenAI server on the same GGUF file (it answers one request at a
  time), when `llama_cpp.server` is installed (`pip install 'llama-cpp-python[server]'`).

For each server and each N, N clients each stream one chat completion of `--new-tokens` greedy tokens at
once, with no repetition penalty or stop (every server then does the same work); prints aggregate generated
tokens/s, p50/p95 time to first token and latency, the ratios, and greedy agreement: how many answers at
the largest N equal the same prompt answered alone by the reference on the same weights (torch: the
serialized server, with the logit margin where they part; llama.cpp: llama.cpp's server). Reads only
local files.

`--kb KB` asks open-book questions, as `lawtune serve --kb` does: each question's last user turn carries the
`--kb-k` articles retrieved for it, each cut to `--kb-chars` characters, in the prompt `lawtune.kb.rag` builds
(`format_context`, the server's own code). The prompts are built here, once, and every server gets the same
prompt tokens (llama.cpp's server has no KB; its chat format drops a system message, so it gets the RAG instructions
at the start of the first user turn, where lawtune's template puts them: `for_llama_cpp_server`, checked token by
token and printed), so the comparison is prefill-heavy work on identical prompts.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

QUESTIONS = ["公司拖欠工资三个月，我该怎么办？", "离婚时孩子的抚养权一般判给谁？", "租房押金房东不退怎么处理？",
             "交通事故对方全责，我能要求哪些赔偿？", "试用期可以随时辞职吗？", "借钱不还，没有借条能起诉吗？",
             "遗产继承的法定顺序是什么？", "被邻居家的狗咬伤了，谁来赔偿？", "劳动合同到期不续签有补偿吗？",
             "网购商品有质量问题，商家拒绝退货怎么办？"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: str, batch: int, dtype: str, engine: str = "torch", quant: str = "Q8_0") -> tuple[subprocess.Popen, str]:
    port = free_port()
    lawtune = Path(sys.executable).with_name("lawtune")
    command = [str(lawtune), "serve", model, "--port", str(port), "--max-batch-size", str(batch),
               "--dtype", dtype, "--engine", engine, "--gguf-quant", quant, "--no-base", "--open", "--timeout", "3600",
               "--log-level", "warning", "--repetition-penalty", "1", "--no-repetition-stop"]
    return wait_ready(command, f"http://127.0.0.1:{port}", "/readyz")


def served_gguf(model: str, quant: str) -> Path:
    """The GGUF file `lawtune serve MODEL --engine llama.cpp` runs (converted once, as the server would)."""
    from lawtune.modeling.runs import is_run_dir, resolve_model_path
    from lawtune.serving.engines.llama import base_gguf, run_gguf

    return run_gguf(Path(model), "best", quant) if is_run_dir(Path(model)) else base_gguf(resolve_model_path(model), quant)


# llama.cpp's server with the model loaded as lawtune's engine loads it (serving/engines/llama_batch.model_params): a
# build with AMX-INT8 repacks weights into AMX buffers whose matrix multiply segfaults on Q4_K_M (llama.cpp
# #20824), so both servers then run the same AVX-512 kernels. `use_extra_bufts = False` is llama-cli's --no-repack.
NO_AMX_SERVER = """
import runpy, types, llama_cpp.llama_cpp as bindings
from lawtune.serving.engines.llama_batch import model_params
unpatched = types.SimpleNamespace(llama_model_default_params=bindings.llama_model_default_params,
                                  llama_print_system_info=bindings.llama_print_system_info)
bindings.llama_model_default_params = lambda: model_params(unpatched)
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def start_llama_cpp(gguf: Path, chat_format: str) -> tuple[subprocess.Popen, str]:
    """llama.cpp's OpenAI-compatible Python server (`pip install 'llama-cpp-python[server]'`) on `gguf`.

    Its `gemma` chat format gives the same prompt tokens as lawtune's template for messages without a system
    message (it drops those: `for_llama_cpp_server`); the template the GGUF carries adds a second BOS token there
    (the template writes one and llama-cpp-python's tokenizer another), after which the model answers nothing."""
    port = free_port()
    command = [sys.executable, "-c", NO_AMX_SERVER, "--model", str(gguf), "--port", str(port),
               "--chat_format", chat_format, "--n_ctx", "4096", "--n_threads", str(os.cpu_count()),
               "--interrupt_requests", "False"]  # queue concurrent requests instead of cancelling the running one
    return wait_ready(command, f"http://127.0.0.1:{port}", "/v1/models")


def wait_ready(command: list[str], url: str, ready_path: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(1200):  # 10 minutes at most
        if process.poll() is not None:
            raise SystemExit(f"{command[0]} exited with {process.returncode}")
        try:
            if httpx.get(url + ready_path, timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("the server did not become ready in 10 minutes")


def conversations(kb: str | None, k: int, chars: int) -> list[list[dict[str, str]]]:
    """One conversation per question: the bare question, or with `kb` the server's RAG prompt for it."""
    plain = [[{"role": "user", "content": question}] for question in QUESTIONS]
    if kb is None:
        return plain
    from lawtune.kb.rag import Rag

    with Rag.open(kb, k=k, max_chars=chars) as rag:
        return [rag.augment(messages).messages for messages in plain]


def for_llama_cpp_server(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The same conversation for llama-cpp-python's `gemma` chat format, which drops a system message: its text
    goes to the start of the first user turn followed by a blank line, where lawtune's Gemma template (and
    Gemma's own) puts it. Without this the server answered open-book prompts without the RAG instructions."""
    if not messages or messages[0]["role"] != "system":
        return messages
    rest = [dict(message) for message in messages[1:]]
    rest[0]["content"] = messages[0]["content"] + "\n\n" + rest[0]["content"]
    return rest


def same_prompts(model: str, asked: list[list[dict[str, str]]], chat_format: str) -> str:
    """How many prompts llama.cpp's server renders to the tokens lawtune's engines prefill."""
    from llama_cpp import llama_chat_format

    from lawtune.modeling.chat import ChatFormat, load_template
    from lawtune.modeling.loading import load_tokenizer
    from lawtune.modeling.runs import is_run_dir, read_run, resolve_model_path

    path = Path(model)
    tokenizer = load_tokenizer(read_run(path).tokenizer_dir if is_run_dir(path) else resolve_model_path(model))
    chat = ChatFormat(tokenizer, load_template("gemma"))
    render = getattr(llama_chat_format, f"format_{chat_format}")
    equal = sum(list(chat.encode_prompt(messages))
                == tokenizer(render(messages=for_llama_cpp_server(messages)).prompt)["input_ids"] for messages in asked)
    return f"{equal}/{len(asked)}"


async def one_request(http: httpx.AsyncClient, messages: list[dict[str, str]], new_tokens: int, extra: dict) -> dict:
    body = {"messages": messages, "max_tokens": new_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}, **extra}
    start = time.perf_counter()
    first, text, tokens, pieces = None, [], 0, 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices", []):
                if choice["delta"].get("content"):
                    pieces += 1
                    first = first or time.perf_counter()
                    text.append(choice["delta"]["content"])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    end = time.perf_counter()
    # llama.cpp's server sends no usage in streams; it streams one token per chunk, so count the chunks
    return {"ttft": (first or end) - start, "latency": end - start, "tokens": tokens or pieces, "text": "".join(text)}


async def run_clients(url: str, clients: int, new_tokens: int, extra: dict, asked: list[list[dict[str, str]]],
                      first: int = 0) -> dict:
    """`clients` requests at once, client i asking conversation `first + i` (cyclically)."""
    async with httpx.AsyncClient(base_url=url, timeout=3600) as http:
        start = time.perf_counter()
        results = await asyncio.gather(*(one_request(http, asked[(first + i) % len(asked)], new_tokens, extra)
                                         for i in range(clients)))
        wall = time.perf_counter() - start
    return {"wall": wall, "results": results, "tokens_per_s": sum(r["tokens"] for r in results) / wall}


def server_peak_mib(url: str) -> float:
    """A lawtune server's peak RSS so far, from its /metrics."""
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("lawtune_peak_resident_memory_bytes "):
            return float(line.split()[1]) / 2**20
    return float("nan")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def tie_margin(model_path: str, messages: list[dict[str, str]], alone: str, batched: str, dtype: str) -> str:
    """Where the batched answer leaves the alone one: the top-2 logit margin of the alone run there."""
    import torch

    from lawtune.modeling.loading import load_model

    loaded = load_model(model_path, dtype=dtype, merge=True)
    prompt = loaded.chat.encode_prompt(messages)
    ids = list(prompt)
    with torch.inference_mode():
        for step in range(256):
            logits = loaded.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
            top = torch.topk(logits, 2)
            ids.append(int(top.indices[0]))
            text = loaded.tokenizer.decode(ids[len(prompt):], skip_special_tokens=True).rstrip("\ufffd")
            if len(text) >= len(batched) or step + 1 >= len(batched) * 4:
                return f"the batched answer equals a plain greedy forward pass alone for all of its text"
            if not batched.startswith(text):
                return f"first differing token #{step}: top-2 logit margin {float(top.values[0] - top.values[1]):.2e}"
    return "no difference found within 256 tokens"


TORCH, LLAMA, SERIAL, LLAMA_SERVER = "lawtune (torch)", "lawtune (llama.cpp)", "serialized", "llama.cpp server"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="run folder, model folder or imported model name")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16, help="lawtune's max batch size")
    parser.add_argument("--dtype", default="auto", help="torch engine: auto (bfloat16 with hardware bf16), float32, ...")
    parser.add_argument("--engines", nargs="+", default=["torch", "llama.cpp"], choices=["torch", "llama.cpp"])
    parser.add_argument("--gguf-quant", default="Q8_0", help="llama.cpp engine: a run's GGUF quantization")
    parser.add_argument("--no-serialized", action="store_true", help="skip the serialized torch reference")
    parser.add_argument("--no-llama-cpp-server", action="store_true", help="skip llama.cpp's own server")
    parser.add_argument("--chat-format", default="gemma", help="llama.cpp server's chat format (the default model's)")
    parser.add_argument("--kb", default=None, help="open-book prompts: retrieve from this KB (sqlite file or postgresql:// URL)")
    parser.add_argument("--kb-k", type=int, default=3, help="--kb: articles per prompt")
    parser.add_argument("--kb-chars", type=int, default=200, help="--kb: characters per article")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from decoding_sweep import cpu_flags  # benchmarks/ is on sys.path when a script in it runs
    from lawtune.modeling.loading import resolve_dtype

    args.dtype = resolve_dtype(args.dtype)  # both torch servers get the same, resolved dtype
    asked = conversations(args.kb, args.kb_k, args.kb_chars)
    servers = []
    if "torch" in args.engines:
        servers.append((TORCH, lambda: start_server(args.model, args.batch, args.dtype)))
    if not args.no_serialized:
        servers.append((SERIAL, lambda: start_server(args.model, 1, args.dtype)))
    gguf = None
    if "llama.cpp" in args.engines or not args.no_llama_cpp_server:
        gguf = served_gguf(args.model, args.gguf_quant)
    if "llama.cpp" in args.engines:
        servers.append((LLAMA, lambda: start_server(args.model, args.batch, args.dtype, "llama.cpp", args.gguf_quant)))
    if not args.no_llama_cpp_server:
        if importlib.util.find_spec("llama_cpp.server") is None or importlib.util.find_spec("starlette_context") is None:
            print("llama.cpp's server is not installed (pip install 'llama-cpp-python[server]'): skipped")
        else:
            servers.append((LLAMA_SERVER, lambda: start_llama_cpp(gguf, args.chat_format)))
            print(f"llama.cpp server's prompts ({args.chat_format} chat format, system text folded into the first "
                  f"user turn) equal to lawtune's in tokens: {same_prompts(args.model, asked, args.chat_format)}")
    print(f"model {args.model}, {args.new_tokens} new tokens per request, torch dtype {args.dtype}, GGUF "
          f"{gguf.name if gguf else '-'}, CPU flags {cpu_flags()}, {os.cpu_count()} CPUs "
          f"(load average now {os.getloadavg()[0]:.1f})")
    if args.kb:
        from lawtune.modeling.chat import ChatFormat, load_template
        from lawtune.modeling.loading import load_tokenizer
        from lawtune.modeling.runs import resolve_model_path, is_run_dir, read_run

        path = Path(args.model)
        tokenizer = load_tokenizer(read_run(path).tokenizer_dir if is_run_dir(path) else resolve_model_path(args.model))
        lengths = [len(ChatFormat(tokenizer, load_template("gemma")).encode_prompt(m)) for m in asked]
        print(f"open-book prompts from {args.kb}: k={args.kb_k}, {args.kb_chars} characters each; prompt tokens "
              f"mean {statistics.mean(lengths):.0f}, max {max(lengths)} (bare questions: ~20)")

    table: dict[tuple[str, int], dict] = {}
    for name, start in servers:
        # no repetition penalty anywhere: lawtune's servers start with it off; llama.cpp's defaults to 1.1
        extra = {"repeat_penalty": 1.0} if name == LLAMA_SERVER else {}
        prompts = [for_llama_cpp_server(messages) for messages in asked] if name == LLAMA_SERVER else asked
        process, url = start()
        try:
            # warm-up on the last conversation; each run then starts where the previous one stopped, so that (up to
            # len(asked) requests) no measured prompt is one a server has already cached whole (both servers keep
            # their slots' prompts: a repeated prompt would measure a cache hit, not a prefill)
            asyncio.run(run_clients(url, 1, 4, extra, prompts, first=len(asked) - 1))
            first = 0
            for clients in args.clients:
                table[name, clients] = run = asyncio.run(run_clients(url, clients, args.new_tokens, extra, prompts, first))
                first += clients
                print(f"  {name} N={clients}: {run['tokens_per_s']:.1f} tokens/s", flush=True)
            if name != LLAMA_SERVER:
                print(f"  {name}: peak resident memory {server_peak_mib(url):,.0f} MiB", flush=True)
        finally:
            process.terminate()
            process.wait(30)

    print(f"\n{'server':<20}{'N':>3}{'tok/s':>9}{'TTFT p50':>10}{'TTFT p95':>10}{'lat p50':>9}{'lat p95':>9}{'tokens':>8}")
    for (name, clients), run in table.items():
        ttft = [r["ttft"] for r in run["results"]]
        latency = [r["latency"] for r in run["results"]]
        print(f"{name:<20}{clients:>3}{run['tokens_per_s']:>9.1f}{pct(ttft, .5):>9.2f}s{pct(ttft, .95):>9.2f}s"
              f"{pct(latency, .5):>8.2f}s{pct(latency, .95):>8.2f}s{sum(r['tokens'] for r in run['results']):>8}")
    print()
    for clients in args.clients:
        for engine, reference in ((TORCH, SERIAL), (LLAMA, SERIAL), (LLAMA, LLAMA_SERVER), (TORCH, LLAMA_SERVER)):
            if (engine, clients) in table and (reference, clients) in table:
                reference_rate = table[reference, clients]["tokens_per_s"]
                if not reference_rate:
                    print(f"N={clients:<3} {reference} generated no tokens: no ratio")
                    continue
                ratio = table[engine, clients]["tokens_per_s"] / reference_rate
                print(f"N={clients:<3} {engine} / {reference}: {ratio:.2f}x aggregate tokens/s")

    # greedy answers under concurrency vs the same prompts answered alone by the reference on the same weights
    largest = max(args.clients)
    for engine, reference in ((TORCH, SERIAL), (LLAMA, LLAMA_SERVER)):
        if (engine, largest) not in table or not any(name == reference for name, _ in table):
            continue
        alone, first, starts = {}, 0, {}
        for clients in args.clients:
            starts[clients] = first
            for i, result in enumerate(table[reference, clients]["results"]):
                alone.setdefault((first + i) % len(asked), result["text"])
            first += clients
        batched = [((starts[largest] + i) % len(asked), r["text"]) for i, r in enumerate(table[engine, largest]["results"])]
        mismatches = [(index, text) for index, text in batched if index in alone and text != alone[index]]
        print(f"\ngreedy answers of {engine} at N={largest} equal to {reference} answering alone: "
              f"{len(batched) - len(mismatches)}/{len(batched)}")
        for index, text in mismatches:
            if engine == TORCH:
                detail = tie_margin(args.model, asked[index], alone[index], text, args.dtype)
            else:
                common = len(os.path.commonprefix([alone[index], text]))
                detail = f"the same first {common} characters (of {len(text)})"
            print(f"  mismatch for {QUESTIONS[index]!r}: {detail}")


if __name__ == "__main__":
    main()
