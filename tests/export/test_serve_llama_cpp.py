"""`lawtune serve --engine llama.cpp`: the run converted to a GGUF and served by llama.cpp's forward pass, with
lawtune's own scheduler, API and decoding on top. Real servers on loopback, real llama.cpp.

Here rather than in tests/serving because it needs this folder's GGUF fixtures: a run whose base was imported
from a GGUF, as the default model is. f32 files, so that llama.cpp and transformers agree token for token.
"""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest

from live_server import start_server
from lawtune.errors import LawtuneError
from lawtune.serving.settings import ServeSettings

QUESTIONS = ["公司拖欠工资怎么办？", "离婚需要什么材料？", "劳动合同到期不续签有补偿吗？", "试用期可以随时辞职吗？",
             "租房押金不退怎么办？", "交通事故怎么赔偿？"]
NO_REPETITION_CONTROL = {"repetition_penalty": 1.0, "repetition_stop": False}


def _settings(run_dir, **extra) -> ServeSettings:
    from lawtune.modeling.decoding import DecodingPolicy

    return ServeSettings(model=str(run_dir), max_batch_size=4, default_max_tokens=12,
                         decoding=DecodingPolicy(**NO_REPETITION_CONTROL), **extra)


@pytest.fixture(scope="module")
def servers(gguf_run_dir, tmp_path_factory):
    """The same run on the torch engine (float32) and on the llama.cpp engine (an f32 GGUF)."""
    import os

    old = os.environ.get("LAWTUNE_HOME")
    os.environ["LAWTUNE_HOME"] = str(tmp_path_factory.mktemp("llama-home"))  # where the served GGUF is cached
    try:
        torch_server = start_server(_settings(gguf_run_dir, dtype="float32"))
        llama_server = start_server(_settings(gguf_run_dir, engine="llama.cpp", gguf_quant="f32"))
    finally:
        if old is not None:
            os.environ["LAWTUNE_HOME"] = old
    yield torch_server, llama_server
    torch_server.stop()
    llama_server.stop()


def _ask(url: str, question: str, **body) -> dict:
    reply = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
        "messages": [{"role": "user", "content": question}], "temperature": 0, "max_tokens": 12, **body})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_the_llama_cpp_engine_answers_as_the_torch_engine_does(servers):
    torch_server, llama_server = servers
    engine = llama_server.engine
    assert engine.gguf.name == "model-f32.gguf" and engine.model_ids == [torch_server.engine.model_ids[0]]
    for question in QUESTIONS[:3]:
        ours, theirs = _ask(llama_server.url, question), _ask(torch_server.url, question)
        assert ours["choices"][0]["message"] == theirs["choices"][0]["message"]
        assert ours["usage"] == theirs["usage"]
        assert ours["choices"][0]["finish_reason"] == theirs["choices"][0]["finish_reason"]


def test_concurrent_requests_run_in_one_batch_and_answer_as_alone(servers):
    _, llama_server = servers
    engine = llama_server.engine
    alone = {q: _ask(llama_server.url, q)["choices"][0]["message"]["content"] for q in QUESTIONS}

    async def together() -> list[str]:
        async with httpx.AsyncClient(base_url=llama_server.url, timeout=120) as http:
            replies = await asyncio.gather(*(http.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": q}], "temperature": 0, "max_tokens": 12}) for q in QUESTIONS))
        return [r.json()["choices"][0]["message"]["content"] for r in replies]

    engine.peak_batch_size = 0
    assert asyncio.run(together()) == [alone[q] for q in QUESTIONS]  # 6 requests through 4 slots
    assert engine.peak_batch_size > 1
    assert sorted(engine.batch._free) == [0, 1, 2, 3] and not engine.batch.sequences  # every KV slot freed


def test_a_prompt_reuses_the_kv_a_free_slot_holds_of_its_prefix(servers):
    torch_server, llama_server = servers
    batch = llama_server.engine.batch
    first = _ask(llama_server.url, QUESTIONS[4])
    before = batch.reused_tokens
    again = _ask(llama_server.url, QUESTIONS[4])
    prompt_tokens = again["usage"]["prompt_tokens"]
    assert batch.reused_tokens - before == prompt_tokens - 1  # all but the last prompt token came from the slot
    assert again["choices"][0]["message"] == first["choices"][0]["message"]
    # a follow-up: the conversation so far is the cached prefix (the previous answer too, as the slot fed it)
    follow_up = [{"role": "user", "content": QUESTIONS[4]}, first["choices"][0]["message"],
                 {"role": "user", "content": "需要什么证据？"}]
    before = batch.reused_tokens
    body = {"messages": follow_up, "temperature": 0, "max_tokens": 12}
    ours = httpx.post(f"{llama_server.url}/v1/chat/completions", json=body, timeout=60).json()
    assert batch.reused_tokens - before > prompt_tokens
    theirs = httpx.post(f"{torch_server.url}/v1/chat/completions", json=body, timeout=60).json()
    assert ours["choices"][0]["message"] == theirs["choices"][0]["message"]


def _prompt(server, messages: list[dict]) -> list[int]:
    engine = server.engine
    return list(engine._served[engine.model_ids[0]].chat.encode_prompt(messages))


def _greedy(batch, prompts: list[list[int]], steps: int, together: bool = True) -> list[list[int]]:
    """Each prompt's greedy tokens on `batch`: all prompts joined before decoding, or each run alone."""
    from lawtune.serving.engines.batch import Sequence

    if not together:
        return [_greedy(batch, [prompt], steps)[0] for prompt in prompts]
    seqs = [Sequence(list(prompt)) for prompt in prompts]
    for seq in seqs:
        batch.join(seq)
    for _ in range(steps):
        batch.step()
    batch.remove(seqs)
    return [seq.generated for seq in seqs]


@pytest.fixture()
def fresh_batch(servers):
    """A second llama.cpp context on the served f32 GGUF, driven directly (the server's runs in its worker)."""
    from lawtune.serving.engines.llama_batch import LlamaCppBatch

    batch = LlamaCppBatch(servers[1].engine.gguf, max_sequences=4, context=512)
    yield batch
    batch.close()


def test_a_prompt_joining_copies_a_running_sequences_shared_prefix_and_decodes_as_alone(servers, fresh_batch):
    """Questions behind the same instructions join while the first runs: the others copy its KV stream (no free
    slot holds the instructions yet) and prefill only their own question; the tokens are those of each alone."""
    system = {"role": "system", "content": "你是律师助理。只根据下面的法条回答，写明《法名》第N条；法条不相关就直说。"}
    prompts = [_prompt(servers[1], [system, {"role": "user", "content": q}]) for q in QUESTIONS[:3]]
    together = _greedy(fresh_batch, prompts, 10)
    shared = len(os.path.commonprefix(prompts))
    assert shared >= 16 and fresh_batch.copied_tokens == 2 * shared
    fresh_batch._held.clear()  # forget the cached prompts: each alone from an empty slot
    assert _greedy(fresh_batch, prompts, 10, together=False) == together


def test_a_client_that_goes_away_frees_its_slot(servers):
    _, llama_server = servers
    engine = llama_server.engine
    stops = engine._served[engine.model_ids[0]].chat.stop_token_ids
    with httpx.stream("POST", f"{llama_server.url}/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": QUESTIONS[0]}], "max_tokens": 200, "stream": True,
            "logit_bias": {str(t): -100 for t in stops}}) as response:  # no end of turn: it would run 200 tokens
        next(response.iter_lines())
    for _ in range(100):
        if not engine.batch.sequences:
            break
        asyncio.run(asyncio.sleep(0.05))
    assert not engine.batch.sequences and len(engine.batch._free) == 4
    # the server still answers (end of turn barred: a random model may otherwise end at once, with no text)
    reply = _ask(llama_server.url, QUESTIONS[1], max_tokens=8, logit_bias={str(t): -100 for t in stops})
    assert reply["usage"]["completion_tokens"] == 8 and reply["choices"][0]["finish_reason"] == "length"


def test_sampling_penalties_and_logprobs_work_on_llama_cpp_logits(servers):
    _, llama_server = servers
    one = _ask(llama_server.url, QUESTIONS[0], temperature=0.9, seed=7, logprobs=True, top_logprobs=2,
               repetition_penalty=1.3)
    two = _ask(llama_server.url, QUESTIONS[0], temperature=0.9, seed=7, logprobs=True, top_logprobs=2,
               repetition_penalty=1.3)
    assert one["choices"][0]["message"] == two["choices"][0]["message"]  # a seed repeats the answer
    content = one["choices"][0]["logprobs"]["content"]
    assert content and all(len(token["top_logprobs"]) == 2 and token["logprob"] <= 0 for token in content)


def test_a_forced_tool_call_parses_on_llama_cpp_as_on_torch(servers):
    """tool_choice named / required decode under the same grammar on llama.cpp's logits: the call parses, and
    greedy (f32 files) it is the torch engine's call."""
    import json

    tool = {"type": "function", "function": {"name": "severance_pay", "parameters": {"type": "object", "properties": {
        "monthly_wage": {"type": "integer", "minimum": 1, "maximum": 99999},  # bounded: greedy on a random
        "years": {"type": "integer", "minimum": 0, "maximum": 40}},                  # model may add digits forever
        "required": ["monthly_wage", "years"]}}}
    calls = []
    for server in servers:
        for choice in ({"type": "function", "function": {"name": "severance_pay"}}, "required"):
            reply = _ask(server.url, QUESTIONS[2], tools=[tool], tool_choice=choice, max_tokens=200)["choices"][0]
            assert reply["finish_reason"] == "tool_calls" and reply["message"]["content"] is None
            [call] = reply["message"]["tool_calls"]
            assert call["function"]["name"] == "severance_pay" and call["id"].startswith("call_")
            calls.append(json.loads(call["function"]["arguments"]))
            assert set(calls[-1]) == {"monthly_wage", "years"}
    assert calls[:2] == calls[2:]  # torch == llama.cpp


def test_a_prompt_longer_than_the_context_is_a_400(gguf_run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LAWTUNE_HOME", str(tmp_path / "home"))
    server = start_server(_settings(gguf_run_dir, engine="llama.cpp", gguf_quant="f32", max_context=32))
    try:
        reply = httpx.post(f"{server.url}/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": "劳动合同" * 40}], "max_tokens": 4})
        assert reply.status_code == 400 and "context" in reply.json()["error"]["message"]
    finally:
        server.stop()


def test_lora_modules_need_the_torch_engine(gguf_run_dir):
    from lawtune.serving.cli import settings_from_options

    with pytest.raises(LawtuneError, match="lora_modules needs the torch engine"):
        settings_from_options({"model": str(gguf_run_dir), "engine": "llama.cpp",
                             "lora_modules": {"other": str(gguf_run_dir)}})


def test_threads_option_reaches_llama_cpp(gguf_run_dir, tmp_path, monkeypatch):
    """`lawtune serve --threads 1` (ServeSettings.threads): llama.cpp's context decodes on that many threads."""
    monkeypatch.setenv("LAWTUNE_HOME", str(tmp_path))
    server = start_server(_settings(gguf_run_dir, engine="llama.cpp", gguf_quant="f32", threads=1))
    try:
        batch = server.engine.batch
        assert batch._ll.llama_n_threads(batch._ctx) == 1 and batch._ll.llama_n_threads_batch(batch._ctx) == 1
        assert _ask(server.url, QUESTIONS[0])["choices"][0]["finish_reason"] in ("stop", "length")
    finally:
        server.stop()
