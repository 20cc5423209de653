"""Normal clients with and without one hostile key (issue 25): success rate and p50 latency of the normal
clients must stay within 10 % and the circuit breaker must never open.

    .venv/bin/python benchmarks/hostile_load.py              # tiny random run, 4 normal clients, 2 × 30 s per phase
    .venv/bin/python benchmarks/hostile_load.py --seconds 20 --rounds 1 --clients 2

A real `lawtune serve` subprocess on loopback (tiny random run + the bundled-laws KB, `--kb`). The server's
default limits (60 requests and 40,000 tokens a minute per key) are the hostile key's; the `normal` key, which
stands for many users behind one client, has its own roomy limits in the keys file. Phases: the normal clients
alone, and the same clients while the hostile key loops over the requests of issue 25 (out-of-vocabulary
prompt ids, `logit_bias {"²": 1}`, four 600-character stop strings, 64k characters of 《刑法》, an empty prompt,
a lone surrogate, a 300k-character completion prompt) in a process of its own, as fast as it is answered and
ignoring Retry-After. Phases alternate (`--rounds`) because other work on a shared machine drifts; p50 is a
ratio within one run. Prints both, why normal requests failed (if any), the hostile key's statuses and the
breaker's trips; exit status 1 when the normal clients' p50 or success rate moved by more than 10 %, a hostile
request got a 5xx, or the breaker opened.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_load import free_port, tiny_run, wait_ready  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "bench-admin-key-0123456789"
QUESTIONS = ["劳动合同到期不续签，公司需要支付经济补偿吗？", "离婚需要什么材料？", "公司拖欠工资怎么办？"]


def hostile_requests() -> list[tuple[str, bytes]]:
    """(path, raw JSON body) of each attack, as issue 25 lists them."""
    import json

    chat = lambda **extra: json.dumps({"messages": [{"role": "user", "content": "问题"}], "max_tokens": 4, **extra},
                                      ensure_ascii=False)
    return [("/v1/completions", b'{"prompt": [1000000000], "max_tokens": 2}'),
            ("/v1/chat/completions", chat(logit_bias={"\u00b2": 1}).encode()),
            ("/v1/chat/completions", chat(stop=["\u6cd5" * 600] * 4).encode()),
            ("/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": "《刑法》" * 16_000}],
                                                 "max_tokens": 4}, ensure_ascii=False).encode()),
            ("/v1/completions", b'{"prompt": "", "max_tokens": 2}'),
            ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "\\ud800"}], "max_tokens": 2}'),
            ("/v1/completions", json.dumps({"prompt": "x" * 300_000, "max_tokens": 2}).encode())]


def normal_client(url: str, key: str, stop: threading.Event, results: list, max_tokens: int, seed: int) -> None:
    with httpx.Client(base_url=url, timeout=300, headers={"Authorization": f"Bearer {key}"}) as http:
        i = seed
        while not stop.is_set():
            i += 1
            started = time.monotonic()
            detail = ""
            try:
                response = http.post("/v1/chat/completions", json={
                    "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
                    "max_tokens": max_tokens, "temperature": 0})
                status = response.status_code
                if status != 200:
                    detail = response.text[:300]
            except httpx.HTTPError as error:
                status, detail = type(error).__name__, str(error)[:300]
            results.append((status, time.monotonic() - started, detail))


def hostile_client(url: str, key: str, go: Any, stop: Any, results: Any) -> None:
    """Loops over the attacks as fast as the server answers, in a process of its own (an attacker is not a
    thread of the clients it slows: in one process its loop would hold the clients' GIL), ignoring Retry-After."""
    attacks, statuses = hostile_requests(), collections.Counter()
    go.wait()
    with httpx.Client(base_url=url, timeout=300, headers={"Authorization": f"Bearer {key}",
                                                          "Content-Type": "application/json"}) as http:
        i = 0
        while not stop.is_set():
            path, body = attacks[i % len(attacks)]
            i += 1
            try:
                statuses[http.post(path, content=body).status_code] += 1
            except httpx.HTTPError as error:
                statuses[type(error).__name__] += 1
    results.put(dict(statuses))


def phase(url: str, keys: dict[str, str], seconds: float, clients: int, max_tokens: int, hostile: bool) -> dict:
    stop, results = threading.Event(), []
    threads = [threading.Thread(target=normal_client, args=(url, keys["normal"], stop, results, max_tokens, n))
               for n in range(clients)]
    spawn = multiprocessing.get_context("spawn")
    attacker_go, attacker_stop, attacker_results = spawn.Event(), spawn.Event(), spawn.Queue()
    attacker = spawn.Process(target=hostile_client,
                             args=(url, keys["hostile"], attacker_go, attacker_stop, attacker_results))
    if hostile:
        attacker.start()
        time.sleep(3)  # its interpreter is up: the attack and the clients start together
        attacker_go.set()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    attacker_stop.set()
    for thread in threads:
        thread.join()
    statuses = attacker_results.get(timeout=600) if hostile else {}
    if hostile:
        attacker.join()
    return {"results": results, "hostile": collections.Counter(statuses)}


def summary(phases: list[dict]) -> dict:
    """The normal clients' requests of several phases of one kind, and the hostile key's statuses."""
    results = [result for phase in phases for result in phase["results"]]
    ok = [latency for status, latency, _ in results if status == 200]
    failures = collections.Counter(f"{status} {detail}" for status, _, detail in results if status != 200)
    return {"failures": failures, "requests": len(results), "success": len(ok) / max(1, len(results)),
            "p50_s": statistics.median(ok) if ok else float("nan"),
            "hostile": sum((phase["hostile"] for phase in phases), collections.Counter())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alone / attacked phase pairs, alternated (other work on the machine drifts)")
    parser.add_argument("--clients", type=int, default=4, help="normal clients (concurrent, one request at a time)")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()

    from lawtune.kb.build import build
    from lawtune.serving.gateway.keys import add_key

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run, kb = tiny_run(root), root / "kb.sqlite"
        build([], kb)
        keys_file = root / "keys.yaml"
        keys = {"normal": add_key(keys_file, "normal", requests_per_minute=100_000, tokens_per_minute=100_000_000),
                "hostile": add_key(keys_file, "hostile")}  # the server's default limits
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "LAWTUNE_ADMIN_KEY": ADMIN}
        cmd = [sys.executable, "-m", "lawtune.cli", "serve", str(run), "--keys-file", str(keys_file), "--kb", str(kb),
               "--max-batch-size", "4", "--queue-size", "16",
               "--host", "127.0.0.1", "--port", str(port)]
        log = open(root / "serve.log", "wb")
        server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(url, server)
            phase(url, keys, 5, args.clients, args.max_tokens, hostile=False)  # warm-up
            phases: dict[bool, list[dict]] = {False: [], True: []}
            for _ in range(args.rounds):
                for hostile in (False, True):
                    phases[hostile].append(phase(url, keys, args.seconds, args.clients, args.max_tokens, hostile))
            alone, attacked = summary(phases[False]), summary(phases[True])
            status = httpx.get(url + "/admin/status", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10).json()
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
    for name, result in (("normal clients alone", alone), ("with the hostile key", attacked)):
        print(f"{name:22s} requests={result['requests']:5d} success={result['success']:.3f} p50={result['p50_s']:.3f} s")
        for failure, count in result["failures"].most_common(5):  # why a normal request failed, if one did
            print(f"    {count} × {failure}")
    ratio = attacked["p50_s"] / alone["p50_s"]
    print(f"p50 ratio (with / without) = {ratio:.3f}; success {alone['success']:.3f} → {attacked['success']:.3f}"
          f" ({args.rounds} × {args.seconds:.0f} s of each, alternated)")
    print(f"hostile key's statuses: {dict(attacked['hostile'])}; breaker trips: {status['breaker']['trips']}")
    # issue 25's bar: the normal clients' success rate and p50 within 10 % of the run without the hostile key
    bad = (ratio > 1.10 or attacked["success"] < 0.9 * alone["success"] or status["breaker"]["trips"]
           or any(not isinstance(code, int) or code >= 500 for code in attacked["hostile"]))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
