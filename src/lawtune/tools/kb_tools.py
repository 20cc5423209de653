"""Knowledge-base tools: look an article up by law and number, or search the laws (needs an open KB).

    from lawtune.kb import open_store
    from lawtune.kb.retrieval import Retriever
    from lawtune.tools.kb_tools import kb_functions
    lookup_article, search_law = kb_functions(Retriever(open_store("kb.sqlite")))   # or a Rag's rag.retriever
    lookup_article(law="劳动合同法", article="第四十七条")["result"]    # the article's text

Law names go through the KB's own name table (short names, 中华人民共和国…, common aliases, 《》 ignored);
article numbers may be 47, "47", "四十七", "第四十七条" or "第十四条之一".
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Callable

from pydantic import Field

from lawtune.kb.names import LawNames
from lawtune.kb.numerals import to_chinese, to_int
from lawtune.tools.tool import ToolError

if TYPE_CHECKING:
    from lawtune.kb.retrieval import Retriever

SEARCH_TEXT_CHARS = 300  # per hit: enough for most articles, short enough for a small model's context
_ARTICLE = re.compile(r"^第?\s*([^条之]+?)\s*条?\s*(?:之\s*(.+))?$")


def parse_article_number(article: int | str) -> tuple[int, int]:
    """(article, sub) from 47, "47", "四十七", "第四十七条", "第十四条之一"; ToolError if unreadable."""
    if isinstance(article, int):
        number, sub = article, 0
    else:
        match = _ARTICLE.match(str(article).strip())
        try:
            if not match:
                raise ValueError(article)
            number = to_int(match.group(1))
            sub = to_int(match.group(2)) if match.group(2) else 0
        except ValueError:
            raise ToolError(f"看不懂条号 {article!r}：请写成 47 或 第四十七条") from None
    if not 0 < number < 10000:
        raise ToolError(f"条号 {article!r} 超出范围（1 到 9999）")
    return number, sub


def kb_functions(kb: "Retriever") -> list[Callable[..., dict[str, Any]]]:
    """lookup_article and search_law bound to one knowledge base's retriever (it searches, looks up, lists laws)."""
    names = LawNames(kb.catalog().versions)

    def lookup_article(
        law: Annotated[str, Field(min_length=1, max_length=60, description="法律名称，如 劳动合同法、民法典")],
        article: Annotated[int | str, Field(description="条号，如 47 或 第四十七条")],
    ) -> dict[str, Any]:
        """按法律名称和条号查法条原文（知识库中现行有效的版本）。"""
        full = names.resolve(law.strip().strip("《》"))
        if full is None:
            raise ToolError(f"知识库中没有名为 {law!r} 的法律；可以先用 search_law 按内容搜索")
        number, sub = parse_article_number(article)
        item = kb.lookup(full, number, sub)
        if item is None:
            sub_text = f"之{to_chinese(sub)}" if sub else ""
            raise ToolError(f"知识库中的《{law.strip('《》')}》没有第{to_chinese(number)}条{sub_text}")
        note = "" if item.current else "（该条只见于旧版本，现行版本没有此条）"
        return {"result": item.text, "formula": f"{item.cite()}，{item.version}版本原文{note}",
                "articles": [item.cite()]}

    def search_law(
        query: Annotated[str, Field(min_length=1, max_length=200, description="要查的法律问题或关键词")],
        k: Annotated[int, Field(ge=1, le=10, description="返回几条")] = 3,
    ) -> dict[str, Any]:
        """在知识库的现行法律中搜索与问题最相关的法条。"""
        hits = [hit for hit in kb.search(query, k=k, kinds=("article",))][:k]
        results = [{"article": hit.item.cite(), "text": hit.item.text[:SEARCH_TEXT_CHARS]} for hit in hits]
        return {"result": results, "formula": f"全文检索“{query}”，按相关度取前{len(results)}条",
                "articles": [hit.item.cite() for hit in hits]}

    return [lookup_article, search_law]
