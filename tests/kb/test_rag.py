"""The RAG prompt format (golden string), augmentation of a conversation, and the citation metrics of eval
against hand-computed values.

    .venv/bin/pytest tests/kb/test_rag.py -q
"""

from __future__ import annotations

import pytest

from lawtune.errors import LawtuneError
from lawtune.kb.rag import INSTRUCTION, Rag, build_prompt, citation_metrics, rag_conversation
from lawtune.kb.store import Hit, Item

ARTICLE = Item(kind="article", text="第八十二条 用人单位自用工之日起超过一个月不满一年未与劳动者订立书面劳动合同的，应当向劳动者每月支付二倍的工资。",
               law="劳动合同法", law_full="中华人民共和国劳动合同法", article=82, version="2012-12-28")
QA = Item(kind="qa", text="可以申请劳动仲裁。", question="公司拖欠工资怎么办？")

GOLDEN_INSTRUCTION = "[资料N]是检索到的法条。只引用与问题相关的资料，写成《法名》第N条；都不相关就直说，再按法律常识回答，不引用法条。"
GOLDEN = (
    "[资料1] 《劳动合同法》第八十二条（2012-12-28）：第八十二条 用人单位自用工之日起超过一个月不满一年未与劳动者…\n"
    "[资料2] 问：公司拖欠工资怎么办？\n"
    "答：可以申请劳动仲裁。\n"
    "\n"
    "问题：没签劳动合同能要双倍工资吗？"
)


def test_prompt_format_is_pinned():
    hits = [Hit(ARTICLE, 9.5), Hit(QA, 3.0)]
    assert INSTRUCTION == GOLDEN_INSTRUCTION
    assert build_prompt("没签劳动合同能要双倍工资吗？", hits, max_chars=30) == GOLDEN
    question = [{"role": "user", "content": "没签劳动合同能要双倍工资吗？"}]
    assert rag_conversation(question, hits, max_chars=30) == [{"role": "system", "content": GOLDEN_INSTRUCTION},
                                                              {"role": "user", "content": GOLDEN}]
    # a system turn of the caller's stays, after the instruction; the training form (answer last) is the same
    with_system = [{"role": "system", "content": "你是律师"}, *question, {"role": "assistant", "content": "能。"}]
    assert rag_conversation(with_system, hits, max_chars=30) == [
        {"role": "system", "content": f"{GOLDEN_INSTRUCTION}\n你是律师"}, {"role": "user", "content": GOLDEN},
        {"role": "assistant", "content": "能。"}]


def test_no_hits_leaves_the_question_alone():
    assert build_prompt("你好", []) == "你好"
    assert rag_conversation([{"role": "user", "content": "你好"}], []) == [{"role": "user", "content": "你好"}]


def test_augment_puts_the_articles_into_the_last_user_turn_only(kb):
    rag = Rag(kb, k=3)
    history = [{"role": "system", "content": "你是律师"}, {"role": "user", "content": "离婚需要什么材料"},
               {"role": "assistant", "content": "需要结婚证。"}, {"role": "user", "content": "协议离婚要去哪里办理登记？"}]
    augmented = rag.augment(history)
    assert augmented.messages[0] == {"role": "system", "content": f"{INSTRUCTION}\n你是律师"}
    assert augmented.messages[1:3] == history[1:3]  # earlier turns as the user wrote them
    assert history[3]["content"] == "协议离婚要去哪里办理登记？"  # the caller's list is not changed
    last = augmented.messages[3]["content"]
    assert last.startswith("[资料1] ") and INSTRUCTION not in last and last.endswith("问题：协议离婚要去哪里办理登记？")
    assert len(augmented.hits) == 3 and "[资料3]" in last and "[资料4]" not in last
    refs = augmented.references(text_chars=50)
    assert [list(r)[:4] for r in refs] == [["kind", "law", "article", "sub"]] * 3
    assert refs[0]["law"] == "民法典" and refs[0]["cite"].startswith("《民法典》第") and len(refs[0]["text"]) <= 51
    assert refs == sorted(refs, key=lambda r: -r["score"])


def test_named_article_is_retrieved_first(kb):
    hits = Rag(kb, k=2).augment([{"role": "user", "content": "劳动合同法第82条怎么规定的？"}]).hits
    assert (hits[0].item.law, hits[0].item.article, hits[0].exact) == ("劳动合同法", 82, True)


def test_bad_settings_are_user_errors(kb):
    with pytest.raises(LawtuneError, match="--kb-k"):
        Rag(kb, k=0)
    with pytest.raises(LawtuneError, match="no such knowledge base"):
        Rag.open("/nonexistent/kb.sqlite")


def test_citation_metrics_by_hand(kb):
    rag = Rag(kb)
    answers = [
        "依据《劳动合同法》第八十二条，可以要求二倍工资。",              # ok
        "根据《民法典》第一千三百条和《中华人民共和国丧葬保险法》第3条。",  # nonexistent_article, unknown_law
        "这个问题要看具体情况。",                                        # no citation
        "《婚姻法》第三十二条已废止，现依民法典第1079条。",                # repealed, ok
    ]
    rows, metrics = citation_metrics(rag.checker, answers)
    assert [[c["verdict"] for c in row] for row in rows] == [
        ["ok"], ["nonexistent_article", "unknown_law"], [], ["repealed", "ok"]]
    # 5 citations: 2 ok → precision 40 %; nonexistent 2 of 5 → 40 %; 3 of 4 answers cite something → 75 %
    assert metrics == {"citation_precision_pct": 40.0, "nonexistent_citation_pct": 40.0, "cited_answers_pct": 75.0,
                       "citations": 5, "verdicts": {"ok": 2, "outdated": 0, "repealed": 1,
                                                    "nonexistent_article": 1, "unknown_law": 1}}
    assert citation_metrics(rag.checker, ["没有引用"])[1]["citation_precision_pct"] == 0.0
