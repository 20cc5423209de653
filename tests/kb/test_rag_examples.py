"""`lawtune prepare --kb`: RAG-format training examples with retrieval run for real, the gold article sometimes
retrieved, injected or left out, and target answers that cite only what the prompt holds.

    .venv/bin/pytest tests/kb/test_rag_examples.py -q
"""

from __future__ import annotations

import json
import random

from typer.testing import CliRunner

from lawtune.cli import app
from lawtune.data.conversations import Example
from lawtune.kb.grounding import ArticleKeys, hit_key
from lawtune.kb.rag import INSTRUCTION, Rag
from lawtune.kb.rag_examples import NO_FIT, gold_hits, grounded_answer, rag_example

LAWS = ["《民法典》第一千零七十六条：夫妻双方自愿离婚的，应当签订书面离婚协议……", "《民法典》第一千零七十八条：婚姻登记机关查明……",
        "《不存在法》第九条：……"]
CIVIL = "中华人民共和国民法典"
ANSWER = ("根据《民法典》第一千零七十六条的规定，可以协议离婚。财产按照《民法典》第一千一百二十五条等相关法律规定处理，"
          "登记见《民法典》第一千零七十六条、第一千零七十八条。也可参考《劳动合同法》。")


def _example(question: str, answer: str = ANSWER, laws: list[str] = LAWS) -> Example:
    return Example([{"role": "user", "content": question}, {"role": "assistant", "content": answer}], {"laws": laws})


def test_gold_articles_from_laws_and_the_reference(kb):
    rag = Rag(kb, k=3)
    keys = ArticleKeys(rag.checker, rag.store)
    assert [(h.item.law, h.item.article) for h in gold_hits(rag, LAWS)] == [("民法典", 1076), ("民法典", 1078)]
    found = gold_hits(rag, LAWS[:1], ANSWER, keys)  # + 1125 and 1078, cited by the answer; 不存在法 is not in the KB
    assert [h.item.article for h in found] == [1076, 1125, 1078] and all(h.item.current for h in found)


def test_answers_keep_only_the_given_articles(kb):
    rag = Rag(kb, k=3)
    keys = ArticleKeys(rag.checker, rag.store)
    items = {(CIVIL, n, 0): rag.store.lookup("民法典", n) for n in (1076, 1078)}
    only_1076 = {(CIVIL, 1076, 0): items[(CIVIL, 1076, 0)]}
    text, removed = grounded_answer(ANSWER, keys, set(only_1076), only_1076)
    assert text == ("根据《民法典》第一千零七十六条的规定，可以协议离婚。财产按照相关法律规定处理，"
                    "登记见《民法典》第一千零七十六条。也可参考《劳动合同法》。")
    assert removed == 2  # 1125 and 1078; the law named alone stays
    text, removed = grounded_answer(ANSWER, keys, set(), {})
    assert text == "根据相关法律的规定，可以协议离婚。财产按照相关法律规定处理，登记见相关法律规定。也可参考《劳动合同法》。"
    assert removed == 4 and keys.cited(text) == []  # 1076 is cited twice
    assert grounded_answer(ANSWER, keys, set(items) | {(CIVIL, 1125, 0)}, {}) == (ANSWER, 0)


def test_gold_retrieved_injected_or_left_out(kb):
    rag = Rag(kb, k=3)
    keys = ArticleKeys(rag.checker, rag.store)
    gold = {(CIVIL, 1076, 0), (CIVIL, 1078, 0), (CIVIL, 1125, 0)}

    named = _example("民法典第1076条说的协议离婚怎么办？")  # the question names the article: retrieval finds it
    made, info = rag_example(rag, named, keys, inject=True, rng=random.Random(0))
    assert info["case"] == "retrieved" and info["gold"] >= 1
    assert made.messages[0] == {"role": "system", "content": INSTRUCTION}
    assert made.messages[1]["content"].endswith("问题：民法典第1076条说的协议离婚怎么办？")
    given = {hit_key(h) for h in rag.retrieve(named.question)}
    assert set(keys.cited(made.messages[-1]["content"])) <= given  # the answer cites only what the prompt holds
    assert made.meta["rag"] == info and made.meta["laws"] == LAWS

    unrelated = "公司拖欠我三个月工资不发，我该去哪里投诉？"
    assert not {hit_key(h) for h in rag.retrieve(unrelated)} & gold  # retrieval misses the gold for real
    made, info = rag_example(rag, _example(unrelated), keys, inject=True, rng=random.Random(1))
    prompt = made.messages[1]["content"]
    assert info["case"] == "injected" and info["gold"] == 1 and prompt.count("[资料") == 3
    assert "第一千零七十六条（" in prompt or "第一千零七十八条（" in prompt or "第一千一百二十五条（" in prompt
    assert not made.messages[-1]["content"].startswith(NO_FIT)
    made, info = rag_example(rag, _example(unrelated), keys, inject=False, rng=random.Random(1))
    answer = made.messages[-1]["content"]
    assert info == {"case": "left_out", "gold": 0, "removed": 4}
    assert answer.startswith(NO_FIT) and keys.cited(answer) == [] and "《劳动合同法》" in answer

    assert rag_example(rag, _example(unrelated, "去劳动监察大队投诉。", []), keys, inject=True, rng=random.Random(0)) is None


def test_prepare_with_kb_rewrites_a_share_of_train(built_kb, tmp_path):
    _backend, location = built_kb
    source = tmp_path / "cited.json"
    rows = [{"query": f"第{n}个问题：我跟我老公离婚需要带哪些材料去登记？", "laws": LAWS[:2], "response": f"回答{n}：{ANSWER}"}
            for n in range(40)]
    rows += [{"query": f"第{n}个问题：邻居家的狗咬了我怎么办？", "laws": [], "response": "可以要求赔偿。"} for n in range(20)]
    source.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    result = CliRunner().invoke(app, ["prepare", str(source), "-o", str(tmp_path / "out"), "--kb", str(location),
                                      "--rag-share", "0.5", "--rag-no-gold", "0.5"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    rewritten = [line for line in lines if "rag" in line["meta"]]
    assert 0 < len(rewritten) < len(lines)  # about half of those with gold articles, chosen by question hash
    assert all(line["conversations"][0] == {"role": "system", "content": INSTRUCTION} for line in rewritten)
    assert all(line["meta"]["laws"] for line in rewritten)  # no gold known: never rewritten
    assert all(line["conversations"][0]["role"] == "user" for line in lines if "rag" not in line["meta"])
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))["rag"]
    assert report["rewritten"] == len(rewritten) and report["lines"] == len(lines)
    assert report["retrieved"] + report["injected"] + report["left_out"] == len(rewritten)
    assert report["rewritten"] + report["no_gold_known"] == report["candidates"] and report["no_gold_known"] > 0
    assert "RAG format:" in result.output
    for split in ("dev", "test"):  # eval adds the articles itself
        assert INSTRUCTION not in (tmp_path / "out" / f"{split}.jsonl").read_text(encoding="utf-8")


def test_training_rows_are_retrieved_without_the_question_memory(kb, tmp_path, monkeypatch):
    # the training questions are in the KB's question memory: searched with it, a line's own entry would vote for
    # its gold article, so training rows are retrieved with the memory off — and the retriever is left as it was
    from lawtune.kb import dense, retrieval
    from lawtune.kb.rag_examples import rag_training_file

    monkeypatch.setattr(retrieval, "MEMORY_WEIGHT", 1.5)
    weights: list[float | None] = []
    real_votes = dense.DenseIndex.votes

    def votes(self, *args, **kwargs):
        weights.append(rag.retriever.memory_weight)
        return real_votes(self, *args, **kwargs)

    monkeypatch.setattr(dense.DenseIndex, "votes", votes)
    rag = Rag(kb, k=3)
    question = "我跟我老公离婚需要带哪些材料去登记？"
    rag.retrieve(question)
    assert weights == [None]  # a search outside the rewrite asks the memory (the module's weight)
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps(_example(question).record(), ensure_ascii=False) + "\n", encoding="utf-8")
    stats = rag_training_file(train, rag, share=1.0, seed=0)
    assert stats["rewritten"] == 1 and weights == [None]  # the rewrite's search did not
    assert rag.retriever.memory_weight is None
    rag.retrieve(question)
    assert weights == [None, None]
