import pytest

from lawtune.kb.citations import CitationChecker


@pytest.fixture
def checker(kb):
    return CitationChecker(kb.catalog())


def verdicts(checker, text):
    return [(v.citation.law_full, v.citation.article, v.citation.sub, v.verdict) for v in checker.check(text)]


LCL = "中华人民共和国劳动合同法"


@pytest.mark.parametrize("text, expected", [
    ("依据《劳动合同法》第八十二条，应支付二倍工资。", [(LCL, 82, 0, "ok")]),
    ("《中华人民共和国劳动合同法》第82条", [(LCL, 82, 0, "ok")]),
    ("根据劳动合同法第八十二条第一款规定", [(LCL, 82, 0, "ok")]),
    ("根据中华人民共和国劳动合同法第三十九条第（一）项", [(LCL, 39, 0, "ok")]),
    ("刑法第十七条之一规定", [("中华人民共和国刑法", 17, 1, "ok")]),
    ("《劳动合同法》第三十六条至第三十八条", [(LCL, 36, 0, "ok"), (LCL, 38, 0, "ok")]),
    ("《劳动合同法》第三十六条、第三十七条和第三百条", [(LCL, 36, 0, "ok"), (LCL, 37, 0, "ok"), (LCL, 300, 0, "nonexistent_article")]),
    ("《消法》第五十五条", [("中华人民共和国消费者权益保护法", 55, 0, "ok")]),
    ("依据《会计法》第五十二条", [("中华人民共和国会计法", 52, 0, "outdated")]),
    ("根据《中华人民共和国合同法》第五十二条，合同无效。", [("中华人民共和国合同法", 52, 0, "repealed")]),
    ("按照合同法第52条", [("中华人民共和国合同法", 52, 0, "repealed")]),
    ("《婚姻法》第三十二条", [("中华人民共和国婚姻法", 32, 0, "repealed")]),
    ("《中华人民共和国丧葬保险法》第三条", [(None, 3, 0, "unknown_law")]),
    ("请参考《中华人民共和国丧葬保险法》。", [(None, None, 0, "unknown_law")]),
    ("《劳动法》规定了工时。", [("中华人民共和国劳动法", None, 0, "ok")]),
    ("签一份《离婚协议书》，劳动法很重要。", []),
    ("民法典第一千二百六十条", [("中华人民共和国民法典", 1260, 0, "ok")]),
    ("《民法典》婚姻家庭编第1076条", [("中华人民共和国民法典", 1076, 0, "ok")]),
    ("《民法典》第一千三百条", [("中华人民共和国民法典", 1300, 0, "nonexistent_article")]),
])
def test_verdicts(checker, text, expected):
    assert verdicts(checker, text) == expected


def test_longest_name_wins(checker):
    # 劳动合同法 contains 合同法 (repealed); the longer, current name must win
    assert verdicts(checker, "劳动合同法第十条") == [(LCL, 10, 0, "ok")]


def test_summary_metrics(checker):
    answers = [
        "依据《劳动合同法》第八十二条和《中华人民共和国丧葬保险法》第三条。",  # ok + unknown_law
        "根据《合同法》第五十二条，以及《民法典》第一千三百条。",              # repealed + nonexistent_article
        "这个问题需要咨询律师。",                                             # no citation
    ]
    summary = checker.summarize(answers)
    assert (summary.answers, summary.answers_with_citations, summary.citations) == (3, 2, 4)
    assert summary.precision == pytest.approx(1 / 4)
    assert summary.nonexistent_rate == pytest.approx(2 / 4)
    record = summary.to_json()
    assert record["verdicts"] == {"ok": 1, "outdated": 0, "repealed": 1, "nonexistent_article": 1, "unknown_law": 1}


def test_bracketed_names_are_skipped_in_linear_time():
    """64k characters of 《刑法》 (issue 25 item 2): each unbracketed-name match used to be compared with every
    bracket span (quadratic: seconds per request); now a binary search finds the span around it."""
    import time

    from lawtune.kb.citations import find_citations
    from lawtune.kb.names import LawNames

    names = LawNames(["中华人民共和国刑法", "中华人民共和国劳动合同法"])
    mixed = "依据《刑法》第十七条和刑法第二十条，《劳动合同法》、劳动合同法第八十二条"
    assert [(c.name, c.article) for c in find_citations(mixed, names)] == [
        ("刑法", 17), ("刑法", 20), ("劳动合同法", None), ("劳动合同法", 82)]
    started = time.perf_counter()
    found = find_citations("《刑法》" * 16_000 + "刑法第三条", names)
    elapsed = time.perf_counter() - started
    assert len(found) == 16_001 and found[-1].article == 3
    assert elapsed < 2.0, elapsed
