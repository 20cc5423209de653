"""benchmarks/retrieval_sets.py and kb_retrieval_sets.py: reference parsing, gold resolution and scoring against
hand-computed values, on the bundled-laws KB of both backends (the `kb` fixture)."""

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import kb_retrieval_sets as bench  # noqa: E402
import retrieval_sets as sets  # noqa: E402

from lawtune.kb.names import LawNames  # noqa: E402
from lawtune.kb.store import Hit  # noqa: E402

CIVIL, CRIMINAL, ACCOUNTING = "中华人民共和国民法典", "中华人民共和国刑法", "中华人民共和国会计法"


def test_parse_reference():
    names = LawNames([CIVIL, CRIMINAL, "最高人民法院关于适用《中华人民共和国民法典》有关担保制度的解释"])
    assert sets.parse_reference("《民法典》第一千零七十六条：夫妻双方自愿离婚的…", names) == \
        {"law": "民法典", "article": 1076, "sub": 0}
    assert sets.parse_reference("中华人民共和国刑法第十七条之一", names) == {"law": "刑法", "article": 17, "sub": 1}
    assert sets.parse_reference("最高人民法院关于适用《民法典》有关担保制度的解释第二条", names) == \
        {"law": "最高人民法院关于适用《中华人民共和国民法典》有关担保制度的解释", "article": 2, "sub": 0}
    assert sets.parse_reference("物业管理条例第七条", names)["law"] == "物业管理条例"  # unknown: kept as written
    assert sets.parse_reference("民法典的规定", names) is None


def _resolve(kb, gold, reference=""):
    catalog = kb.catalog()
    return bench.resolve(kb, catalog, LawNames([*catalog.versions, *catalog.repealed]), gold, reference)


def test_resolve_and_score(kb):
    golds = [_resolve(kb, {"law": "民法典", "article": 1076, "sub": 0}),
             _resolve(kb, {"law": "民法典", "article": 1079, "sub": 0}),
             _resolve(kb, {"law": "刑法", "article": 264, "sub": 0}),
             _resolve(kb, {"law": "物业管理条例", "article": 7, "sub": 0})]
    assert [g.missing for g in golds] == ["", "", "", "law not in the KB"]
    assert _resolve(kb, {"law": "民法典", "article": 9999, "sub": 0}).missing == "no such article in the KB"
    hit = lambda law, article: Hit(kb.lookup(law, article), score=1.0)  # noqa: E731
    hits = [hit(CIVIL, 1079), hit(CIVIL, 1076)] + [hit(CIVIL, n) for n in range(1, 6)]  # 1076 at 2, 1079 at 1
    score = bench.SetScore("t")
    ranks = bench.score_question(score, golds, hits, cpu_ms=3.0)
    assert ranks == [2, 1, None, None]
    # article recall: 1 of 4 gold at @1, 2 of 4 from @5 on; law: 民法典 of {民法典, 刑法, 物业管理条例}
    assert [score.recall[k] for k in bench.KS] == [0.25, 0.5, 0.5, 0.5]
    assert [score.law_recall[k] for k in bench.KS] == [pytest.approx(1 / 3)] * 4
    assert (score.hit5, score.law_hit5, score.in_kb, score.golds) == (1, 1, 3, 4)
    assert dict(score.misses) == {"law not in the top 5, rank >100": 1, "not in KB: law not in the KB": 1}


def test_renumbered_provision_counts_under_todays_number(kb):
    """会计法 2017 第二十六条 is 2024 第二十四条: a hit on the current 24 finds it, a hit on the current 26 does not."""
    old = kb.lookup(ACCOUNTING, 26, version="2017-11-04")
    gold = _resolve(kb, {"law": "会计法", "article": 26, "sub": 0}, reference=old.text)
    assert gold.row == (ACCOUNTING, "2017-11-04", 26, 0) and gold.now == (ACCOUNTING, 24, 0)
    assert gold.matches(kb.lookup(ACCOUNTING, 24)) and not gold.matches(kb.lookup(ACCOUNTING, 26))
    # without a reference the number is read as today's article
    assert _resolve(kb, {"law": "会计法", "article": 26, "sub": 0}).now == (ACCOUNTING, 26, 0)


@pytest.mark.parametrize(("rank", "band"), [(6, "6–20"), (20, "6–20"), (21, "21–100"), (100, "21–100"), (None, ">100")])
def test_band(rank, band):
    assert bench.band(rank) == band


def test_answer_sets_writes_questions_whose_reference_cites_the_gold(tmp_path, monkeypatch):
    """benchmarks/answer_sets.py: a set's questions as an eval file whose reference cites exactly the gold articles
    (as the grounding metrics read it), questions without gold skipped, --limit kept."""
    import json

    import answer_sets

    from lawtune.data.conversations import read_examples
    from lawtune.kb.citations import find_citations

    (tmp_path / "sets").mkdir()
    records = [{"id": "s:1", "question": "网络借款合同什么时候成立？",
                "gold": [{"law": "民法典", "article": 469, "sub": 0}, {"law": "刑法", "article": 17, "sub": 1}]},
               {"id": "s:2", "question": "没有答案的问题", "gold": []},
               {"id": "s:3", "question": "离婚要什么材料？", "gold": [{"law": "民法典", "article": 1076, "sub": 0}]},
               {"id": "s:4", "question": "第四个", "gold": [{"law": "民法典", "article": 1, "sub": 0}]}]
    (tmp_path / "sets" / "s.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                               encoding="utf-8")
    out = tmp_path / "answers.jsonl"
    monkeypatch.setattr(sys, "argv", ["answer_sets.py", "--sets", str(tmp_path / "sets"), "--set", "s", "--limit", "2",
                                      "-o", str(out)])
    answer_sets.main()
    examples = list(read_examples(out))
    assert [e.question for e in examples] == ["网络借款合同什么时候成立？", "离婚要什么材料？"]
    names = LawNames([CIVIL, CRIMINAL])
    assert [(c.law_full, c.article, c.sub) for c in find_citations(examples[0].reference, names)] == [
        (CIVIL, 469, 0), (CRIMINAL, 17, 1)]
    monkeypatch.setattr(sys, "argv", ["answer_sets.py", "--sets", str(tmp_path / "sets"), "--set", "nope", "-o", str(out)])
    with pytest.raises(SystemExit, match="no such set"):
        answer_sets.main()
