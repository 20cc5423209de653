from lawtune.kb.bundled import bundled_law_paths
from lawtune.kb.laws import parse_law_file, parse_law_text, short_name

SAMPLE = """# 中华人民共和国示例法

2001年1月1日 第九届全国人民代表大会常务委员会第二十次会议通过

2010年6月30日 第十一届全国人民代表大会常务委员会修正

2011年1月1日 施行

<!-- INFO END -->

## 第一编 总则

### 第一章 一般规定

第一条 为了示例，制定本法。

第二条 本法适用于下列情形：

（一）甲；

（二）乙。

第二条之一 新增的条文。

#### 第一节 细节

第十条 细节条文。第二条规定的情形除外。

第二百三十四条规定的人不在此列。

## 附则

第十一条 本法自公布之日起施行。
"""


def test_parse_articles_paths_and_continuations():
    law = parse_law_text(SAMPLE, source="示例法.md")
    assert law.full_name == "中华人民共和国示例法" and law.short_name == "示例法"
    assert law.version == "2010-06-30"  # latest adoption/amendment date; the 施行 date is not a version
    refs = [(a.article, a.sub) for a in law.articles]
    assert refs == [(1, 0), (2, 0), (2, 1), (10, 0), (11, 0)]
    second = law.articles[1]
    assert second.text == "第二条 本法适用于下列情形：\n（一）甲；\n（二）乙。"
    assert second.path == ("第一编 总则", "第一章 一般规定")
    # a paragraph that only starts by referring to an article (no space after 条) stays a continuation
    assert law.articles[3].text.endswith("第二百三十四条规定的人不在此列。")
    assert law.articles[3].path == ("第一编 总则", "第一章 一般规定", "第一节 细节")
    assert law.articles[4].path == ("附则",)


def test_version_from_file_name_wins():
    assert parse_law_text(SAMPLE, source="示例法(2018-12-29).md").version == "2018-12-29"


def test_short_name():
    assert short_name("中华人民共和国劳动合同法") == "劳动合同法"
    assert short_name("最高人民法院关于适用《中华人民共和国民法典》婚姻家庭编的解释（一）").startswith("最高人民法院")


def _bundled(name: str):
    return [parse_law_file(p) for p in bundled_law_paths() if p.name == name]


def test_bundled_civil_code_and_criminal_law():
    marriage, = _bundled("婚姻家庭编.md")
    assert marriage.full_name == "中华人民共和国民法典" and marriage.version == "2020-05-28"
    art = {a.article: a for a in marriage.articles}[1076]
    assert art.path == ("婚姻家庭编", "第四章 离婚")
    assert "离婚协议应当载明" in art.text  # the second paragraph belongs to the article
    criminal, = _bundled("刑法.md")
    assert criminal.version == "2023-12-29"
    subs = {(a.article, a.sub): a for a in criminal.articles}
    assert subs[(17, 1)].text.startswith("第十七条之一 已满七十五周岁")
    assert subs[(17, 1)].path == ("第一编 总则", "第二章 犯罪", "第一节 犯罪和刑事责任")
    assert (133, 1) in subs and (133, 2) in subs
    assert len({(a.article, a.sub) for a in criminal.articles}) == len(criminal.articles)
