"""Attribution: an answer that repeats a retrieved article's words names that article, and only then."""

from lawtune.kb.attribution import LEAD, MIN_QUOTED_CHARS, attribute, quoted_run
from lawtune.kb.citations import find_citations
from lawtune.kb.names import LawNames
from lawtune.kb.store import Hit, Item

CIVIL = "中华人民共和国民法典"
SUPPORT = ("第一千零八十五条 离婚后，子女由一方直接抚养的，另一方应当负担部分或者全部抚养费。负担费用的多少和期限的长短，"
           "由双方协议；协议不成的，由人民法院判决。")
CUSTODY = ("第一千零八十四条 父母与子女间的关系，不因父母离婚而消除。离婚后，子女无论由父或者母直接抚养，仍是父母双方的子女。")
REGISTER = "第一千零四十九条 要求结婚的男女双方应当亲自到婚姻登记机关申请结婚登记。符合本法规定的，予以登记，发给结婚证。"


def hit(number: int, text: str) -> Hit:
    return Hit(Item(kind="article", text=text, law="民法典", law_full=CIVIL, article=number), 1.0)


HITS = [hit(1085, SUPPORT), hit(1084, CUSTODY), hit(1049, REGISTER)]


def cited(text: str) -> list[int]:
    return [c.article for c in find_citations(text, LawNames([CIVIL])) if c.article is not None]


def test_an_answer_repeating_an_article_names_it_and_no_other():
    answer = ("根据《民法典》的规定，离婚后子女由一方直接抚养的，另一方应当负担部分或者全部抚养费。"
              "如果双方协议不成的，可以向法院起诉。")
    attributed = attribute(answer, HITS, max_chars=200)
    assert attributed.text.startswith(answer)
    assert attributed.text.endswith(f"{LEAD}《民法典》第一千零八十五条")
    assert [h.item.article for h in attributed.quoted] == [1085]
    assert cited(attributed.text) == [1085]  # the citation checker and the grounding metrics read it


def test_articles_are_named_in_the_order_the_answer_uses_them():
    answer = ("要求结婚的男女双方应当亲自到婚姻登记机关申请结婚登记。离婚后，子女由一方直接抚养的，"
              "另一方应当负担部分或者全部抚养费。")
    attributed = attribute(answer, HITS)
    assert [h.item.article for h in attributed.added] == [1049, 1085]
    assert attributed.text.endswith("《民法典》第一千零四十九条、《民法典》第一千零八十五条")


def test_an_article_the_answer_already_cites_is_not_named_again():
    answer = "根据《民法典》第一千零八十五条，离婚后子女由一方直接抚养的，另一方应当负担部分或者全部抚养费。"
    attributed = attribute(answer, HITS)
    assert attributed.text == answer
    assert [h.item.article for h in attributed.quoted] == [1085] and attributed.added == []


def test_shared_legal_phrases_are_not_a_quote():
    # "人民法院" and "离婚后" occur in the answer and the articles, but no run of MIN_QUOTED_CHARS characters
    answer = "离婚后对方不给钱的，您可以收集证据，向当地人民法院提起诉讼，请求对方履行。"
    assert max(quoted_run(answer, h.item.text)[0] for h in HITS) < MIN_QUOTED_CHARS
    assert attribute(answer, HITS).text == answer


def test_only_what_the_prompt_showed_counts():
    # the words come after the excerpt's end: the model cannot have quoted them from the material
    answer = "负担费用的多少和期限的长短，由双方协议；协议不成的，由人民法院判决。"
    assert attribute(answer, HITS, max_chars=None).added
    assert attribute(answer, HITS, max_chars=30).text == answer


def test_an_answer_that_says_the_material_does_not_fit_is_left_alone():
    answer = "所给资料与这个问题不直接相关，下面按一般法律常识回答。离婚后子女由一方直接抚养的，另一方应当负担部分或者全部抚养费。"
    assert attribute(answer, HITS).text == answer


def test_punctuation_and_spaces_do_not_break_a_quote():
    answer = "离婚后 子女由一方直接抚养的 另一方应当负担部分或全部抚养费"
    assert quoted_run(answer, SUPPORT)[0] >= MIN_QUOTED_CHARS


def test_nothing_retrieved_or_nothing_said_changes_nothing():
    assert attribute("离婚后子女由一方直接抚养的，另一方应当负担部分或者全部抚养费。", []).text.endswith("抚养费。")
    assert attribute("", HITS).text == ""
    qa = Hit(Item(kind="qa", question="抚养费怎么算？", text="离婚后子女由一方直接抚养的，另一方应当负担部分或者全部抚养费。"), 1.0)
    assert attribute("离婚后子女由一方直接抚养的，另一方应当负担部分或者全部抚养费。", [qa]).quoted == []


def test_the_service_lists_what_an_answer_repeats(kb):
    """serving/kb.extension on a real KB: `quoted` and the `attribution` line of an answer quoting a retrieved
    article; the message content itself is left to the model."""
    from lawtune.kb.rag import Rag
    from lawtune.serving.kb import extension

    rag = Rag(kb, k=3)
    augmented = rag.augment([{"role": "user", "content": "离婚后孩子的抚养费谁出？"}])
    article = next(h.item for h in augmented.hits if h.item.kind == "article")
    answer = "根据法律规定，" + article.text.split(" ", 1)[-1][:30]
    field = extension(rag, augmented)(answer)
    assert (field["quoted"][0]["law"], field["quoted"][0]["article"]) == (article.law, article.article)
    assert field["attribution"].startswith("依据：") and article.cite() in field["attribution"]
    assert extension(rag, augmented)("请咨询律师。")["quoted"] == []
    assert extension(rag, augmented)("请咨询律师。")["attribution"] is None


def test_a_repeated_article_retrieval_ranked_low_is_not_named():
    answer = "要求结婚的男女双方应当亲自到婚姻登记机关申请结婚登记。离婚后，子女由一方直接抚养的，另一方应当负担部分或者全部抚养费。"
    ranked = [hit(1085, SUPPORT), Hit(HITS[2].item, 0.5)]  # 第一千零四十九条 at half the best score
    attributed = attribute(answer, ranked)
    assert [h.item.article for h in attributed.quoted] == [1049, 1085]  # both repeated
    assert [h.item.article for h in attributed.added] == [1085]  # only the well-ranked one named
    named = Hit(HITS[2].item, 0.5, exact=True)  # the question named it: always close enough
    assert [h.item.article for h in attribute(answer, [hit(1085, SUPPORT), named]).added] == [1049, 1085]
    assert len(attribute(answer, ranked, min_ratio=0.4).added) == 2
