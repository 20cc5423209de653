"""Versions of one law: each older article's number in the current version, and search over all versions'
wording that returns one hit per provision (versions.py, retrieval.py)."""

from __future__ import annotations

from lawtune.kb.rag import hit_record
from lawtune.kb.retrieval import ask_clause
from lawtune.kb.store import Item
from lawtune.kb.versions import link_versions
from lawtune.kb.retrieval import Retriever

OLD_82 = ("第八十二条 用人单位自用工之日起超过一个月不满一年未与劳动者订立书面劳动合同的，应当向劳动者每月支付二倍的工资。\n"
          "用人单位违反本法规定不与劳动者订立无固定期限劳动合同的，自应当订立无固定期限劳动合同之日起向劳动者每月支付二倍的工资。")


def test_link_versions_follows_renumbered_amended_and_dropped_articles():
    rows = [
        (1, "2018", False, 146, 0, "第一百四十六条 有下列情形之一的，不得担任公司的董事、监事、高级管理人员：无民事行为能力"),
        (2, "2018", False, 140, 0, "第一百四十条 无记名股票的转让，由股东将该股票交付给受让人后即发生转让的效力。"),
        (3, "2018", False, 11, 0, "第十一条 设立公司必须依法制定公司章程。"),
        (10, "2023", True, 178, 0, "第一百七十八条 有下列情形之一的，不得担任公司的董事、监事、高级管理人员：无民事行为能力；"
                                  "限制民事行为能力"),
        (11, "2023", True, 11, 0, "第十一条 设立公司应当依法制定公司章程。公司章程对公司、股东、董事、监事、高级管理人员具有约束力。"),
        (12, "2023", True, 140, 0, "第一百四十条 上市公司应当依法披露股东、实际控制人的信息，相关信息应当真实、准确、完整。"),
    ]
    links = link_versions(rows)
    assert links == {1: (178, 0), 2: (0, 0), 3: (11, 0)}  # renumbered; gone (bearer shares); amended in place


def test_a_repealed_law_links_nothing():
    rows = [(1, "2010", False, 5, 0, "第五条 某某规定。"), (2, "2015", False, 5, 0, "第五条 某某规定。")]
    assert link_versions(rows) == {1: (0, 0), 2: (0, 0)}


def test_bundled_accounting_law_versions_are_linked(kb):
    # 会计法 2024 inserted articles: the 2017 第二十六条 (会计核算不得有下列行为) is 第二十四条 now
    assert kb.lookup("会计法", 26, version="2017-11-04").current_article == 24
    assert kb.lookup("会计法", 24).current_article == 24  # a current article: its own number
    assert kb.lookup("会计法", 43, version="2017-11-04").current_article == 0  # merged away in 2024


def test_search_matches_an_older_wording_and_returns_the_current_article(writable_kb):
    # a newer version keeps only the first paragraph of 第八十二条, renumbered 第八十三条
    retriever = Retriever(writable_kb)
    new_text = "第八十三条 用人单位自用工之日起超过一个月不满一年未与劳动者订立书面劳动合同的，应当向劳动者每月支付二倍的工资。"
    writable_kb.add([Item(kind="article", text=new_text, law="劳动合同法", law_full="中华人民共和国劳动合同法",
                          article=83, version="2099-01-01")])
    old = writable_kb.lookup("劳动合同法", 82, version="2012-12-28")
    assert old.text == OLD_82 and (old.current, old.current_article) == (False, 83)
    hits = retriever.search("用人单位违反本法规定不与劳动者订立无固定期限劳动合同，要付二倍工资吗", k=10, kinds=("article",))
    top = hits[0]
    assert (top.item.law, top.item.article, top.item.version) == ("劳动合同法", 83, "2099-01-01")
    assert top.via == "2012-12-28 第八十二条" and top.to_json()["via"] == top.via == hit_record(top)["via"]
    assert all(h.item.current for h in hits)
    assert len({(h.item.law_full, h.item.article, h.item.sub) for h in hits}) == len(hits)  # one hit per provision


def test_all_versions_keeps_articles_the_current_version_dropped(kb):
    retriever = Retriever(kb)
    query = "隐匿或者故意销毁依法应当保存的会计凭证、会计帐簿、财务会计报告，构成犯罪的"
    assert all(h.item.current for h in retriever.search(query, k=20))
    every = retriever.search(query, k=20, current_only=False)
    assert any((h.item.law, h.item.article, h.item.version, h.item.current) == ("会计法", 44, "2017-11-04", False)
               for h in every)


def test_ask_clause_is_the_asking_sentence_without_boilerplate():
    scenario = "一家公司的董事会决定让其中一位董事成为兼任经理。根据哪个法律条文，董事会可以决定由董事会成员兼任经理？"
    assert ask_clause(scenario) == "董事会可以决定由董事会成员兼任经理？"
    assert ask_clause("离婚需要什么材料") == ""  # one sentence: nothing to single out
