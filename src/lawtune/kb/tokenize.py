"""Chinese tokenization for full-text search, applied identically to documents and queries.

    from lawtune.kb.tokenize import tokenize
    tokenize("离婚需要什么材料", "bigram")   # ['离婚', '婚需', '需要', '要什', '什么', '么材', '材料']

FTS5's own tokenizers do not work for Chinese: `unicode61` keeps a whole run of CJK characters as one token,
so 离婚 never matches inside 夫妻双方自愿离婚的; `trigram` cannot match a two-character word. So the store
tokenizes text itself and hands FTS5 space-separated tokens.

Schemes (`TOKENIZERS`): `bigram` = overlapping character pairs of each CJK run (a lone character is kept);
`jieba` = jieba's search-mode words; `jieba+bigram` = both. Latin words and numbers are kept whole, lower-cased;
punctuation is dropped. Measured on LawBench 3-2 (all of LawRefBook indexed, current laws only,
`benchmarks/kb_retrieval.py --tokenizer ...`): see docs/knowledge-base.md; `bigram` is the default.
"""

from __future__ import annotations

import re

TOKENIZERS = ("bigram", "jieba", "jieba+bigram")
DEFAULT_TOKENIZER = "bigram"

_RUN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[A-Za-z0-9]+")
_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def tokenize(text: str, scheme: str = DEFAULT_TOKENIZER) -> list[str]:
    if scheme == "bigram":
        return _bigrams(text)
    if scheme == "jieba":
        return _jieba(text)
    if scheme == "jieba+bigram":
        return _jieba(text) + _bigrams(text)
    raise ValueError(f"unknown tokenizer {scheme!r}; choose one of {', '.join(TOKENIZERS)}")


def characters(text: str) -> list[str]:
    """The CJK characters of text, in order: the unigrams the stores' `char_scores` score candidates with (the
    stores count, in table `char_df`, how many items hold each one)."""
    return _CJK_RE.findall(text)


def _bigrams(text: str) -> list[str]:
    tokens: list[str] = []
    for run in _RUN_RE.findall(text):
        if not _CJK_RE.match(run):
            tokens.append(run.lower())
        elif len(run) == 1:
            tokens.append(run)
        else:
            tokens.extend(run[i:i + 2] for i in range(len(run) - 1))
    return tokens


def _jieba(text: str) -> list[str]:
    import jieba  # imported here: loading its dictionary takes ~1 s, bigram users never pay it

    jieba.setLogLevel(60)
    return [w.lower() for run in _RUN_RE.findall(text) for w in jieba.cut_for_search(run) if w.strip()]
