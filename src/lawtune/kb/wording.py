"""The fixed sentences of an open-book answer: the instruction every RAG prompt carries, and the sentence an
answer opens with when the material does not fit (what RAG training teaches, what attribution and grounding read).

    from lawtune.kb.wording import INSTRUCTION, NO_FIT, says_no_fit

Their own module, so that `kb.rag` (which builds prompts and calls attribution) and `kb.attribution` (which reads
the no-fit opening) both take them from here without importing each other.
"""

from __future__ import annotations

# short: it is read on every question, and a long one was echoed into answers (issue 23)
INSTRUCTION = "[资料N]是检索到的法条。只引用与问题相关的资料，写成《法名》第N条；都不相关就直说，再按法律常识回答，不引用法条。"
# how a RAG training answer opens when no gold article is in its prompt (rag_examples), so the model learns to say it;
# an answer that opens so is not attributed (attribution)
NO_FIT = "所给资料与这个问题不直接相关，下面按一般法律常识回答。"
NO_FIT_PREFIX = NO_FIT.split("，", 1)[0]  # 所给资料与这个问题不直接相关


def says_no_fit(answer: str) -> bool:
    """True when the answer opens by saying the material does not fit (NO_FIT's first clause)."""
    return answer.lstrip().startswith(NO_FIT_PREFIX)
