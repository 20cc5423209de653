"""The Q&A bridge (retrieval.py, 4.): Q&A items vote for the articles they cite. Runs on every backend."""

import json

from lawtune.kb import Item
from lawtune.kb.build import qa_item, read_items
from lawtune.kb.retrieval import Retriever

# shares almost no words with 民法典第一百八十八条 ("向人民法院请求保护民事权利的诉讼时效期间为三年…")
QUESTION = "朋友借我的钱拖了好几年都不还，现在去告他还来得及吗？"
LIMITATION = ("民法典", 188, 0)


def _refs(hits):
    return [(h.item.law, h.item.article, h.item.sub) for h in hits if h.item.kind == "article"]


def test_a_qa_item_citing_an_article_pulls_it_up(writable_kb):
    retriever = Retriever(writable_kb)
    assert LIMITATION not in _refs(retriever.search(QUESTION, k=5))  # BM25 alone misses it
    writable_kb.add([qa_item("同学借我的钱拖了三四年都不还，现在去告还来得及吗？",
                             "要看诉讼时效是否已过：一般为三年，从你知道对方不还之日起算。",
                             ["《民法典》第一百八十八条：向人民法院请求保护民事权利的诉讼时效期间为三年。"])])
    hits = retriever.search(QUESTION, k=5)
    assert LIMITATION in _refs(hits)[:3]
    assert any(h.item.kind == "qa" for h in hits)  # the Q&A item itself is still returned with kinds "qa"
    articles_only = retriever.search(QUESTION, k=3, kinds=("article",))
    assert LIMITATION in _refs(articles_only) and all(h.item.kind == "article" for h in articles_only)


def test_qa_citing_a_missing_article_gives_no_vote(writable_kb):
    retriever = Retriever(writable_kb)
    writable_kb.add([Item(kind="qa", question="同学借我的钱拖了三四年都不还，现在去告还来得及吗？",
                          text="见《民法典》第一千三百条。")])  # no such article (民法典 ends at 1260): no vote
    hits = retriever.search(QUESTION, k=5, kinds=("article",))
    assert hits and all(h.item.kind == "article" for h in hits)
    assert ("民法典", 1300, 0) not in _refs(hits) and LIMITATION not in _refs(hits)


def test_build_reads_query_response_json_and_appends_cited_laws(tmp_path):
    path = tmp_path / "cited.json"
    path.write_text(json.dumps([{"query": "离婚要什么材料？", "response": "带上身份证和结婚证。",
                                 "laws": ["《民法典》第一千零七十六条：夫妻双方自愿离婚的，应当签订书面离婚协议…"]},
                                {"query": "没有引用的问题", "response": "答复"}], ensure_ascii=False), encoding="utf-8")
    first, second = read_items(path)
    assert (first.kind, first.question) == ("qa", "离婚要什么材料？")
    assert first.text == "带上身份证和结婚证。\n\n相关法条：《民法典》第一千零七十六条"
    assert second.text == "答复"
