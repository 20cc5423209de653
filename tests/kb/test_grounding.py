"""Grounding metrics of `--kb` answers (lawtune.kb.grounding) against hand-computed values, on both backends.

    .venv/bin/pytest tests/kb/test_grounding.py -q
"""

from __future__ import annotations

from lawtune.kb.grounding import ArticleKeys, echoes_instruction, grounding_metrics
from lawtune.kb.rag import Rag
from lawtune.kb.wording import INSTRUCTION, NO_FIT, says_no_fit

CIVIL, LABOUR, ACCOUNTING = "中华人民共和国民法典", "中华人民共和国劳动合同法", "中华人民共和国会计法"


def test_article_keys_use_the_current_numbering(kb):
    rag = Rag(kb)
    keys = ArticleKeys(rag.checker, rag.store)
    text = "依据《民法典》第一千零七十九条、第1079条和劳动合同法第82条，《民法典》另有规定。"
    assert keys.cited(text) == [(CIVIL, 1079, 0), (LABOUR, 82, 0)]  # distinct; the law named alone is no article
    # 《会计法》第五十二条 exists only in the 2017 version: it is the current version's 第五十一条
    assert keys.cited("《会计法》第五十二条") == [(ACCOUNTING, 51, 0)]
    assert ArticleKeys(rag.checker).cited("《会计法》第五十二条") == [(ACCOUNTING, 52, 0)]  # no store: as written
    assert keys.cited("《丧葬保险法》第3条") == []  # unknown law: no article to compare


def test_grounding_metrics_by_hand(kb):
    rag = Rag(kb)
    keys = ArticleKeys(rag.checker, rag.store)
    answers = [
        "依据《民法典》第一千零七十九条，可以起诉离婚；另见《民法典》第一千零八十条。",  # 1079 given, 1080 not
        "按《劳动合同法》第八十二条，可以要二倍工资。",                                 # given
        "这个问题要看具体情况。",                                                     # no citation
        "资料都不相关就直说，再按法律常识回答。依《民法典》第一千零七十六条。",            # echo; 1076 not given
    ]
    references = ["根据《民法典》第一千零七十九条的规定……", "参见《劳动合同法》第八十七条。", "依《民法典》第五条。", "没有引用。"]
    retrieved = [[(CIVIL, 1079, 0), (CIVIL, 1078, 0)], [(LABOUR, 82, 0), (LABOUR, 87, 0)], [(CIVIL, 5, 0)], []]
    rows, metrics = grounding_metrics(keys, answers, references, retrieved)
    # 4 cited articles (1079, 1080, 82, 1076), 2 of them retrieved → 50 %; references cite in 3 questions, answer 1 agrees → 33.33 %;
    # the reference's article was retrieved for all 3 → 100 %; 1 of 4 answers echoes the instruction → 25 %;
    # of the retrieved articles cited where the reference cites one (1079 in the 1st, 82 in the 2nd), 1079 fits → 50 %
    assert metrics == {"reference_agreement_pct": 33.33, "reference_questions": 3, "instruction_echo_pct": 25.0,
                       "no_fit_pct": 0.0, "retrieved_citation_pct": 50.0, "retrieved_citation_n": 4,
                       "reference_retrieved_pct": 100.0, "retrieved_fit_pct": 50.0, "retrieved_fit_n": 2,
                       "no_fit_when_absent_pct": 0.0, "no_fit_absent_n": 0, "no_fit_when_present_pct": 0.0,
                       "no_fit_present_n": 3}
    assert rows[0] == {"cited_articles": [[CIVIL, 1079, 0], [CIVIL, 1080, 0]], "echoes_instruction": False,
                       "says_no_fit": False, "cited_in_retrieved": 1, "reference_articles": [[CIVIL, 1079, 0]],
                       "agrees_with_reference": True}
    assert rows[1]["agrees_with_reference"] is False and "reference_articles" not in rows[3]
    _rows, alone = grounding_metrics(keys, answers, references)  # no retrieval (--check-kb alone)
    assert alone == {"reference_agreement_pct": 33.33, "reference_questions": 3, "instruction_echo_pct": 25.0,
                     "no_fit_pct": 0.0}


def test_no_fit_is_right_when_the_reference_article_was_not_retrieved(kb):
    rag = Rag(kb)
    keys = ArticleKeys(rag.checker, rag.store)
    answers = [f"{NO_FIT}一般可以起诉离婚。",                   # says so; the reference's 1079 was not retrieved: right
               f"  {NO_FIT}按劳动合同法处理。",                 # says so; the reference's 82 was retrieved: wrong
               "依据《民法典》第一千零七十九条，可以起诉离婚。",  # answers from the material, 1079 retrieved
               "所给资料与问题无关。",                           # not the taught opening: not counted
               f"{NO_FIT}"]                                     # the reference cites nothing: only in no_fit_pct
    references = ["依《民法典》第一千零七十九条。", "依《劳动合同法》第八十二条。", "依《民法典》第一千零七十九条。",
                  "依《民法典》第五条。", "没有引用。"]
    retrieved = [[(CIVIL, 1080, 0)], [(LABOUR, 82, 0)], [(CIVIL, 1079, 0)], [(CIVIL, 6, 0)], [(CIVIL, 5, 0)]]
    rows, metrics = grounding_metrics(keys, answers, references, retrieved)
    assert [row["says_no_fit"] for row in rows] == [True, True, False, False, True]
    # absent: questions 1 and 4, one says so → 50 %; present: questions 2 and 3, one says so → 50 %; 3 of 5 overall
    assert (metrics["no_fit_when_absent_pct"], metrics["no_fit_absent_n"]) == (50.0, 2)
    assert (metrics["no_fit_when_present_pct"], metrics["no_fit_present_n"]) == (50.0, 2)
    assert metrics["no_fit_pct"] == 60.0
    assert says_no_fit(NO_FIT) and not says_no_fit(f"答：{NO_FIT}")


def test_echo_counts_the_current_and_the_old_instruction():
    assert echoes_instruction(f"好的。{INSTRUCTION}")
    assert echoes_instruction("如果资料与问题无关，请说明“所给资料不适用”")  # the pre-issue-23 wording
    assert not echoes_instruction("根据《民法典》第一千零七十九条，可以起诉离婚，不引用法条也行。")
