"""Load the gateway: N requests at concurrency C against a small queue; print counts by status, p50/p95
latency of accepted requests, and the server's RSS (before, peak, after).

    .venv/bin/python benchmarks/gateway_load.py                       # tiny random run, 300 req, C=32, queue 8
    .venv/bin/python benchmarks/gateway_load.py --model runs/demo --requests 100 --max-tokens 32
    .venv/bin/python benchmarks/gateway_load.py --redis                # limits in a throwaway redis-server

The server is a real `lawtune serve` subprocess on loopback with an API key (250 requests/min, so the
429 path is exercised too), `--max-batch-size 4 --queue-size 8`. Every request must end 200, 429 or 503;
anything else (a 500, a timeout) is printed and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
QUESTION = [{"role": "user", "content": "劳动合同到期不续签，公司需要支付经济补偿吗？"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_run(root: Path) -> Path:
    """The test suite's tiny random model + a LoRA adapter, as a run folder (seconds, no downloads)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import torch
    from peft import LoraConfig, get_peft_model
    from tiny_model import build_tiny_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lawtune.fsutil import sha256_tree
    from lawtune.modeling.chat import load_template

    model_dir, run = build_tiny_model(root / "model"), root / "run"
    torch.manual_seed(0)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                                LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    peft_model.save_pretrained(run / "adapter")
    shutil.copytree(run / "adapter", run / "best")
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(run / "tokenizer")
    (run / "chat_template.jinja").write_text(load_template("gemma"), encoding="utf-8")
    (run / "run.json").write_text(json.dumps({"base_model": {"path": str(model_dir), "sha256": sha256_tree(model_dir)}}))
    return run


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    sys.exit("the server did not become ready")


class PeakRss(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process, self.peak, self.running = psutil.Process(pid), 0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.05)


async def load(url: str, key: str, total: int, concurrency: int, max_tokens: int):
    counts: collections.Counter = collections.Counter()
    latencies: list[float] = []
    problems: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                 limits=httpx.Limits(max_connections=concurrency),
                                 timeout=httpx.Timeout(300, connect=10)) as client:
        async def one(i: int) -> None:
            async with gate:
                start = time.perf_counter()
                try:
                    response = await client.post("/v1/chat/completions", json={
                        "messages": QUESTION, "max_tokens": max_tokens, "seed": i, "stream": i % 2 == 0})
                except httpx.HTTPError as error:
                    problems.append(f"{type(error).__name__}: {error}")
                    return
                counts[response.status_code] += 1
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - start)
                elif response.status_code not in (429, 503):
                    problems.append(f"{response.status_code}: {response.text[:200]}")

        began = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(total)))
    return counts, latencies, problems, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="run folder to serve (default: a tiny random run built here)")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--queue-size", type=int, default=8)
    parser.add_argument("--max-batch-size", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--redis", action="store_true", help="keep the rate limits in a throwaway redis-server")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    from lawtune.serving.gateway.keys import add_key

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or str(tiny_run(tmp))
        keys_file = tmp / "keys.yaml"
        key, probe = add_key(keys_file, "load", requests_per_minute=250), add_key(keys_file, "probe")
        extra, redis = [], None
        if args.redis:
            redis_port = free_port()
            redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL)
            extra = ["--rate-limit-storage", f"redis://127.0.0.1:{redis_port}/0"]
            time.sleep(0.5)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([str(Path(sys.executable).parent / "lawtune"), "serve", model, "--no-base",
                                   "--port", str(port), "--keys-file", str(keys_file), "--rpm", "100000",
                                   "--tpm", "100000000", "--queue-size", str(args.queue_size),
                                   "--max-batch-size", str(args.max_batch_size), "--log-level", "warning", *extra])
        try:
            wait_ready(url, server)
            asyncio.run(load(url, probe, 16, 4, args.max_tokens))  # warm-up
            rss_before = psutil.Process(server.pid).memory_info().rss
            sampler = PeakRss(server.pid)
            sampler.start()
            counts, latencies, problems, wall = asyncio.run(
                load(url, key, args.requests, args.concurrency, args.max_tokens))
            sampler.running = False
            sampler.join()
            rss_after = psutil.Process(server.pid).memory_info().rss
            healthy = httpx.get(url + "/healthz", timeout=5).status_code == 200
        finally:
            server.terminate()
            server.wait(timeout=30)
            if redis is not None:
                redis.terminate()

    q = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else [float("nan")] * 19
    mib = 2**20
    print(f"gateway load: {args.requests} requests, concurrency {args.concurrency}, queue {args.queue_size}, "
          f"batch {args.max_batch_size}, max_tokens {args.max_tokens}, storage {'redis' if args.redis else 'memory'}, "
          f"model {'tiny random run' if not args.model else args.model}")
    print(f"  status counts: {dict(sorted(counts.items()))}   wall {wall:.1f} s")
    print(f"  accepted latency: p50 {statistics.median(latencies) if latencies else float('nan'):.3f} s, "
          f"p95 {q[18]:.3f} s")
    print(f"  server RSS: before {rss_before / mib:.0f} MiB, peak {sampler.peak / mib:.0f} MiB, "
          f"after {rss_after / mib:.0f} MiB;  /healthz after: {'200' if healthy else 'FAILED'}")
    if problems or not healthy:
        print("  problems:", *problems[:10], sep="\n    ")
        sys.exit(1)


if __name__ == "__main__":
    main()
