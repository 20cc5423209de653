"""The shipped retriever pairs (src/lawtune/kb/retriever_pairs.jsonl): held-out questions stay out, and the
pairs resolve against a KB's articles (citations and resolved `gold` alike)."""

import json
import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from retrieval_sets import NearDuplicates  # noqa: E402

from lawtune.kb.names import LawNames  # noqa: E402
from lawtune.kb.training_pairs import PAIRS_FILE, named, real_pairs  # noqa: E402

STARD_DEV = ROOT / "tests" / "fixtures" / "stard_dev.query.txt"


def shipped() -> list[dict]:
    text = resources.files("lawtune.kb").joinpath(PAIRS_FILE).read_text("utf-8")
    return [json.loads(line) for line in text.splitlines()]


def stard_dev() -> dict[int, str]:
    lines = STARD_DEV.read_text(encoding="utf-8").splitlines()
    return {int(qid): question for qid, question in (line.split("\t", 1) for line in lines if line.strip())}


def test_near_duplicates_by_hand():
    near = NearDuplicates(["合同成立时一年期贷款市场报价利率四倍适用于网络贷款吗？", "盗窃和抢夺有什么区别？"])
    assert near.match("合同成立时一年期贷款市场报价利率四倍适用于网络贷款平台吗？") == \
        "合同成立时一年期贷款市场报价利率四倍适用于网络贷款吗？"  # bigram Jaccard 23/27 = 0.85
    assert near.match("盗窃和抢夺有什么区别") == "盗窃和抢夺有什么区别？"  # punctuation does not count
    # a conservative threshold: one word swapped (7 of 11 bigrams shared, 0.64) still counts as near
    assert near.match("盗窃和抢劫有什么区别？") == "盗窃和抢夺有什么区别？"
    assert NearDuplicates(["盗窃和抢夺有什么区别？"], threshold=0.7).match("盗窃和抢劫有什么区别？") is None
    assert near.match("离婚需要什么材料") is None


def test_no_stard_dev_question_nor_a_near_duplicate_is_shipped():
    pairs, dev = shipped(), stard_dev()
    assert len(dev) == 308
    stard = [p for p in pairs if p["source"].startswith("STARD train split")]
    assert len(stard) > 1000  # the train split is there ...
    assert not {p["query_id"] for p in stard} & set(dev)  # ... and no dev id
    near = NearDuplicates(list(dev.values()))
    leaked = [p["question"] for p in pairs if near.matches(p["question"])]
    assert leaked == []


def test_resolved_gold_finds_articles_of_judicial_interpretations_too():
    civil, guarantee = "中华人民共和国民法典", "最高人民法院关于适用《中华人民共和国民法典》有关担保制度的解释"
    index = {(civil, 54, 0): 0, (guarantee, 2, 0): 1, (civil, 1076, 0): 2}
    names = LawNames([civil, guarantee])
    gold = [{"law": civil, "article": 54, "sub": 0}, {"law": guarantee, "article": 2, "sub": 0},
            {"law": civil, "article": 1, "sub": 0}, {"law": "不存在的条例", "article": 2, "sub": 0}]
    assert named(gold, index, names) == [0, 1]  # the article the KB lacks and the unknown law are left out
    assert named([{"law": "民法典", "article": 1076, "sub": 1}], index, names) == [2]  # a paragraph → its article


def test_shipped_pairs_resolve_against_the_bundled_laws(kb):
    articles = kb.current_articles()
    index = {(a.law_full, a.article, a.sub): n for n, a in enumerate(articles)}
    catalog = kb.catalog()
    names = LawNames([*catalog.versions, *catalog.repealed])
    pairs = list(real_pairs(index, names))
    questions = {q for q, _ in pairs}
    stard = [p for p in shipped() if "gold" in p]
    assert sum(p["question"][:300] in questions for p in stard) > len(stard) // 2  # 民法典 alone is half of them
    first = next(p for p in stard if p["question"] in questions)
    golds = dict(pairs)[first["question"]]
    assert {(articles[g].law_full, articles[g].article) for g in golds} <= \
        {(names.resolve(g["law"]), g["article"]) for g in first["gold"]}
