"""Retrieval through the `KnowledgeStore` interface only: runs unchanged on every backend in conftest.BACKENDS."""

import pytest

from lawtune.kb import Item, format_context
from lawtune.kb.retrieval import Retriever

MARRIAGE_REGISTRATION = {1049, 1076, 1077, 1078, 1080}


def test_counts_and_current_versions(kb):
    assert kb.count()["article"] > 2000
    catalog = kb.catalog()
    accounting = catalog.versions["中华人民共和国会计法"]
    assert [v.version for v in accounting] == ["2024-06-28", "2017-11-04"]
    assert [v.current for v in accounting] == [True, False]
    # 民法典 第一千二百六十条 says these were repealed; the KB read it from the text
    assert "第一千二百六十条" in catalog.repealed["中华人民共和国合同法"]
    assert "中华人民共和国婚姻法" in catalog.repealed


def test_divorce_question_finds_marriage_registration_articles(kb):
    retriever = Retriever(kb)
    hits = retriever.search("离婚需要什么材料", k=3)
    assert any(h.item.law == "民法典" and h.item.article in MARRIAGE_REGISTRATION for h in hits)


@pytest.mark.parametrize("query, law, article, sub", [
    ("民法典第一千零七十六条", "民法典", 1076, 0),
    ("劳动合同法第82条", "劳动合同法", 82, 0),
    ("《中华人民共和国劳动合同法》第八十二条", "劳动合同法", 82, 0),
    ("刑法第十七条之一是怎么规定的？", "刑法", 17, 1),
    ("依照中华人民共和国刑法第133条之一", "刑法", 133, 1),
])
def test_named_article_comes_first(kb, query, law, article, sub):
    retriever = Retriever(kb)
    first = retriever.search(query, k=3)[0]
    assert (first.item.law, first.item.article, first.item.sub, first.exact) == (law, article, sub, True)
    assert first.score > retriever.search(query, k=3)[1].score


def test_lookup_versions(kb):
    fallback = kb.lookup("会计法", 52)  # only in the 2017 version: returned, marked not current
    assert (fallback.version, fallback.current) == ("2017-11-04", False)
    old = kb.lookup("中华人民共和国会计法", 52, version="2017-11-04")
    assert old is not None and not old.current
    assert kb.lookup("会计法", 1).version == "2024-06-28"  # default: the current version
    assert kb.lookup("劳动合同法", 999) is None


def test_search_hides_outdated_versions_by_default(kb):
    retriever = Retriever(kb)
    hits = retriever.search("会计法 会计工作", k=20)
    assert hits and all(h.item.current for h in hits)


def test_named_law_is_boosted(kb):
    retriever = Retriever(kb)
    hits = retriever.search("劳动合同法 试用期 工资", k=3)
    assert all(h.item.law == "劳动合同法" for h in hits)


def test_add_makes_items_searchable_without_rebuild(writable_kb):
    retriever = Retriever(writable_kb)
    assert not any(h.item.kind == "qa" for h in retriever.search("宠物狗咬伤邻居", k=5))
    added = writable_kb.add([Item(kind="qa", question="宠物狗咬伤邻居怎么赔偿？",
                                  text="饲养的动物造成他人损害的，动物饲养人应当承担侵权责任。")])
    assert added == 1
    hits = retriever.search("宠物狗咬伤邻居", k=3)
    assert hits[0].item.kind == "qa" and hits[0].item.question.startswith("宠物狗")
    assert writable_kb.count()["qa"] == 1


def test_adding_a_newer_version_makes_the_old_one_outdated(writable_kb):
    old = writable_kb.lookup("劳动合同法", 82)
    writable_kb.add([Item(kind="article", text="第八十二条 新版本的条文。", law="劳动合同法",
                          law_full="中华人民共和国劳动合同法", article=82, version="2099-01-01")])
    assert writable_kb.lookup("劳动合同法", 82).version == "2099-01-01"
    assert not writable_kb.lookup("劳动合同法", 82, version=old.version).current


def test_hit_json_fields_and_context(kb):
    retriever = Retriever(kb)
    hit = retriever.search("劳动合同法第82条", k=1)[0]
    record = hit.to_json()
    assert list(record)[:5] == ["law", "article", "sub", "score", "text"]
    assert (record["law"], record["article"], record["sub"]) == ("劳动合同法", 82, 0)
    context = format_context([hit], max_chars=20)
    assert context.startswith("[资料1] 《劳动合同法》第八十二条（2012-12-28）：") and context.endswith("…")


def test_search_from_several_threads(kb):
    # a server shares one store (and one retriever) between request threads
    from concurrent.futures import ThreadPoolExecutor

    retriever = Retriever(kb)
    queries = ["劳动合同法第82条", "离婚需要什么材料", "交通事故 责任", "消费者 退货"] * 3
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda q: retriever.search(q, k=3), queries))
    assert all(len(hits) == 3 for hits in results)
    assert results[0][0].item.article == 82


def test_statute_outranks_a_regulation_with_the_same_text(writable_kb):
    retriever = Retriever(writable_kb)
    text = "第九十九条 养蜂人应当为蜂箱设置明显的警示标志。"
    writable_kb.add([
        Item(kind="article", text=text, law="养蜂管理条例", law_full="养蜂管理条例", article=99, version="2020-01-01"),
        Item(kind="article", text=text, law="养蜂法", law_full="中华人民共和国养蜂法", article=99, version="2020-01-01"),
    ])
    hits = retriever.search("蜂箱警示标志", k=2, kinds=("article",))
    assert [h.item.law for h in hits] == ["养蜂法", "养蜂管理条例"]
    assert hits[0].score > hits[1].score


GUN = Item(kind="article", text="第一条 非法持有、私藏枪支、弹药的，处三年以下有期徒刑。", law="测试条例", law_full="测试条例",
           article=1, version="2020-01-01")
RELIC = Item(kind="article", text="第二条 私藏文物的，处罚款。", law="测试条例", law_full="测试条例", article=2,
             version="2020-01-01")


def test_char_scores_count_shared_single_characters(kb):
    unrelated = Item(kind="article", text="第三条 本条例自公布之日起施行。", law="测试条例", law_full="测试条例", article=3)
    gun, relic, none = kb.char_scores("私藏手枪", [GUN, RELIC, unrelated])
    assert gun > relic > 0  # 私 藏 in both, 枪 in GUN only
    assert none == 0
    assert kb.char_scores("手枪", [RELIC]) == [0.0]


def test_char_counts_follow_add(writable_kb):
    item = Item(kind="qa", question="龘是什么", text="龘龘龘是一个生僻字。")
    assert writable_kb.char_scores("龘", [item]) == [0.0]  # no item holds 龘 yet: no idf
    writable_kb.add([item])
    assert writable_kb.char_scores("龘", [item])[0] > 0


def test_a_shared_character_lifts_an_article(writable_kb, monkeypatch):
    # both match the bigram 私藏 and nothing else; the shorter RELIC wins on bigrams alone, GUN shares 枪 with 手枪
    from lawtune.kb import retrieval

    monkeypatch.setattr(retrieval, "DENSE_WEIGHT", 0.0)  # the character score alone (the learned one: test_dense.py)
    retriever = Retriever(writable_kb)
    writable_kb.add([GUN, RELIC])

    def order():
        laws = [(h.item.law, h.item.article) for h in retriever.search("私藏手枪", k=50, kinds=("article",))]
        return laws.index(("测试条例", 1)) < laws.index(("测试条例", 2))

    assert order()  # GUN first
    monkeypatch.setattr(retrieval, "CHAR_WEIGHT", 0.0)
    assert not order()  # bigrams alone: RELIC first


def test_an_article_citing_a_statute_votes_for_it(writable_kb, monkeypatch):
    from lawtune.kb import retrieval

    # a judicial interpretation shares the facts' words; the statute article it applies shares almost none
    text = "第一条 偷走他人饲养的龙猫，价值较大的，依照刑法第二百六十四条的规定，以盗窃罪定罪处罚。"
    writable_kb.add([Item(kind="article", text=text, law="关于办理偷龙猫案件的解释",
                          law_full="最高人民法院关于办理偷龙猫案件适用法律的解释", article=1, sub=0,
                          version="2026-01-01", path="", source="test")])
    retriever = Retriever(writable_kb)

    def rank() -> int:
        hits = retriever.search("邻居偷走了我家饲养的龙猫，该怎么处理", k=30, kinds=("article",))
        found = [n for n, h in enumerate(hits) if (h.item.law, h.item.article) == ("刑法", 264)]
        return found[0] if found else len(hits)

    monkeypatch.setattr(retrieval, "CITED_WEIGHT", 0.0)
    alone = rank()
    monkeypatch.setattr(retrieval, "CITED_WEIGHT", 1.0)
    voted = rank()
    assert voted < alone and voted < 5, (alone, voted)
