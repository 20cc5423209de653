"""The knowledge base under live updates and hostile queries (issue 25 items 4, 7, 10), on both backends:
`lawtune kb add` in another process while a store (or a whole server) keeps searching — no `database is
locked`, no `math domain error`, no stale law list — a bounded query-token cache, and KB paths holding `#`/`?`.

    .venv/bin/pytest tests/kb/test_live_update.py -q
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import lawtune
from lawtune.kb.retrieval import Retriever

SRC = Path(lawtune.__file__).resolve().parents[1]  # the code under test, for the `kb add` subprocess too
NEW_LAW = "# 中华人民共和国示例保护法\n\n<!-- INFO END -->\n\n第一条 为了保护示例，制定本法。\n\n第二条 示例受法律保护。\n"


def write_inputs(folder: Path, qa_count: int) -> tuple[Path, Path]:
    """A new law (Markdown) and `qa_count` Q&A pairs, each with a marker word no bundled law holds."""
    law = folder / "示例保护法(2024-01-01).md"
    law.write_text(NEW_LAW, encoding="utf-8")
    qa = folder / "qa.jsonl"
    with open(qa, "w", encoding="utf-8") as out:
        for i in range(qa_count):
            turns = [{"role": "user", "content": f"翡翠鹦鹉第{i}号走失了怎么办？"},
                     {"role": "assistant", "content": f"翡翠鹦鹉第{i}号的主人可以报警并发布寻物启事。"}]
            out.write(json.dumps({"conversations": turns}, ensure_ascii=False) + "\n")
    return law, qa


def kb_add(location, *files: Path) -> subprocess.Popen:
    """`lawtune kb add` in its own process (this tree's code), as an operator would run it."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen([sys.executable, "-m", "lawtune.cli", "kb", "add", str(location), *map(str, files)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def location_of(store) -> str:
    return str(getattr(store, "path", None) or store.url)


@pytest.mark.integration  # a `lawtune kb add` subprocess
def test_an_add_by_another_process_is_seen_at_once(writable_kb, tmp_path):
    """The open store (a server's) searched and built its catalog before; another process adds a law and
    3,000 Q&A pairs; the store's next search finds them and its citation verdicts know the law (PostgreSQL:
    the stale item count used to make idf a `math domain error`)."""
    from lawtune.kb.rag import Rag

    rag = Rag(writable_kb)
    retriever = rag.retriever  # the one a server searches through
    assert rag.check("《示例保护法》第一条")[0]["verdict"] == "unknown_law"
    assert retriever.search("离婚需要什么材料", k=3)  # caches warm (counts, df, law names)
    assert not any("翡翠鹦鹉" in hit.item.text for hit in retriever.search("翡翠鹦鹉第17号走失了怎么办", k=3))
    law, qa = write_inputs(tmp_path, 3000)
    adder = kb_add(location_of(writable_kb), law, qa)
    assert adder.wait(timeout=300) == 0, adder.stdout.read()
    hits = retriever.search("翡翠鹦鹉第17号走失了怎么办", k=3)
    assert hits and hits[0].item.kind == "qa" and "第17号" in hits[0].item.question
    assert rag.check("《示例保护法》第一条")[0]["verdict"] == "ok"
    assert rag.check("《示例保护法》第九条")[0]["verdict"] == "nonexistent_article"
    assert retriever.search("示例受法律保护", k=1)[0].item.law_full == "中华人民共和国示例保护法"


def test_query_token_cache_is_bounded(kb):
    """Three 30k-character random-CJK queries used to leave every distinct token (hits and misses) in the
    SQLite store's cache: +60 MB for 100k characters; it is an LRU of TOKEN_CACHE_SIZE now."""
    import gc
    import tracemalloc

    from lawtune.kb.sqlite_store import TOKEN_CACHE_SIZE, SqliteStore

    if not isinstance(kb, SqliteStore):
        pytest.skip("the PostgreSQL store keeps no per-token cache")
    rng = random.Random(3)
    retriever = Retriever(kb)
    assert retriever.search("离婚需要什么材料", k=3)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(3):
        kb.text_search("".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(30_000)), k=3)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert kb._token_df.cache_info().currsize <= TOKEN_CACHE_SIZE
    assert grown < 6_000_000, grown
    assert retriever.search("离婚需要什么材料", k=3)


@pytest.mark.parametrize("folder", ["kb#1", "kb?mode=ro", "with space"])
def test_kb_paths_with_uri_characters_open_the_right_file(tmp_path, folder):
    from lawtune.kb import open_store
    from lawtune.kb.build import build

    path = tmp_path / folder / "kb.sqlite"
    path.parent.mkdir()
    law, _qa = write_inputs(tmp_path, 0)
    build([law], path)
    with open_store(path) as store:
        assert store.count() == {"article": 2}
        store.add([])
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".sqlite") == ["kb.sqlite"]
    made = sorted(p.name for p in tmp_path.iterdir() if p.name != "lawtune-home")  # (the test's LAWTUNE_HOME)
    assert made == sorted([folder, law.name, "qa.jsonl"])


# ---- a live server while `kb add` runs -------------------------------------------------------------------


def test_kb_add_while_serving_loses_nothing(writable_kb, tiny_run_dir, tmp_path):
    """Clients chat with --kb (each request retrieves) while `lawtune kb add` adds 20,000 Q&A pairs and a law
    in another process: every request is answered, and once `add` returns the new items are retrieved and the
    new law's citations are `ok` in the same running server."""
    from live_server import start_server

    from lawtune.serving.gateway.settings import GatewaySettings
    from lawtune.serving.settings import ServeSettings

    location = location_of(writable_kb)
    live = start_server(ServeSettings(model=str(tiny_run_dir), dtype="float32", max_batch_size=4, default_max_tokens=2,
                                      serve_base=False, kb=location, gateway=GatewaySettings(open_access=True, requests_per_minute=None,
                                                                                tokens_per_minute=None)))
    failures: list[str] = []
    done = threading.Event()
    answered = [0]

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=live.url, timeout=120) as http:
            while not done.is_set():
                question = rng.choice(["离婚需要什么材料？", "公司拖欠工资怎么办？", f"翡翠鹦鹉第{rng.randint(0, 19999)}号走失了"])
                response = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": question}],
                                                                    "max_tokens": 1})
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text[:300]}")
                answered[0] += 1

    try:
        law, qa = write_inputs(tmp_path, 20_000)
        threads = [threading.Thread(target=client, args=(seed,)) for seed in range(3)]
        for thread in threads:
            thread.start()
        adder = kb_add(location, qa, law)
        code = adder.wait(timeout=600)
        output = adder.stdout.read()
        before_done = answered[0]
        done.set()
        for thread in threads:
            thread.join(timeout=120)
        assert code == 0, output
        assert not failures, failures[:3]
        assert before_done >= 3, before_done  # the clients really ran during the add
        body = {"messages": [{"role": "user", "content": "翡翠鹦鹉第12345号走失了怎么办？"}], "max_tokens": 1}
        answer = httpx.post(live.url + "/v1/chat/completions", json=body, timeout=120).json()
        assert any("第12345号" in (ref.get("text") or "") for ref in answer["lawtune"]["references"]), answer
        assert live.app.state.rag.check("《示例保护法》第二条")[0]["verdict"] == "ok"
    finally:
        done.set()
        live.stop()
