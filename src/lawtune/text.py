"""Text helpers every area shares.

    from lawtune.text import excerpt
    excerpt("《劳动合同法》第八十二条 用人单位自用工之日起超过一个月…", 10)   # the first 10 characters + "…"
"""

from __future__ import annotations

ELLIPSIS = "…"


def excerpt(text: str, limit: int) -> str:
    """`text` as it is when it has at most `limit` characters, else its first `limit` characters and "…"."""
    return text if len(text) <= limit else text[:limit] + ELLIPSIS
