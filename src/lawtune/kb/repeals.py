"""Which laws are repealed: read from the statutes' own 废止 clauses, plus a small table for the rest.

    repealed_in("本法自2021年1月1日起施行。《中华人民共和国婚姻法》、《中华人民共和国合同法》…同时废止。")
    # ['中华人民共和国婚姻法', '中华人民共和国合同法']

LawRefBook keeps no repealed laws and does not mark them, but the law that replaced one usually says so in its
last article (民法典第一千二百六十条 repeals 婚姻法, 继承法, 民法通则, 收养法, 担保法, 合同法, 物权法, 侵权责任法,
民法总则). `STATIC_REPEALED` covers repeals the bundled texts do not state; each entry names its source.
A clause that names the law's own title (工会法 1992 repealing the 1950 工会法) is not a repeal of itself:
the store skips those.
"""

from __future__ import annotations

import re

# 《X》、《Y》同时废止 / 《X》即行废止 / 废止《X》: the titles of one clause, up to the word 废止.
_CLAUSE_RE = re.compile(r"((?:《[^《》]{2,60}》[、，,和及与]*)+)[^。《》]{0,12}?废止")
_TITLE_RE = re.compile(r"《([^《》]{2,60})》")

STATIC_REPEALED = {
    # repealed by 合同法 (1999) 第四百二十八条, itself repealed; LawRefBook has no 合同法 text
    "中华人民共和国经济合同法": "《合同法》第四百二十八条",
    "中华人民共和国涉外经济合同法": "《合同法》第四百二十八条",
    "中华人民共和国技术合同法": "《合同法》第四百二十八条",
    # replaced by 治安管理处罚法 (2005) 第一百一十九条
    "中华人民共和国治安管理处罚条例": "《治安管理处罚法》第一百一十九条",
    # 劳动教养 abolished by the NPC Standing Committee decision of 2013-12-28
    "劳动教养试行办法": "全国人大常委会关于废止有关劳动教养法律规定的决定(2013-12-28)",
}


def repealed_in(article_text: str) -> list[str]:
    """Titles an article declares repealed (废止), in order of mention."""
    titles: list[str] = []
    for clause in _CLAUSE_RE.finditer(article_text):
        titles.extend(t for t in _TITLE_RE.findall(clause.group(1)) if t not in titles)
    return titles
