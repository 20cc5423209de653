"""The options of `lawtune prepare`, with their defaults, in one typed schema.

    from lawtune.data.policy import PreparePolicy, parse_policy
    policy = parse_policy({"is_best": "best-per-title", "seed": 7})   # LawtuneError lists every bad option

The CLI flags are made from these fields (`lawtune.settings.option`) and `lawtune.data.prepare.run(**options)`
validates through `parse_policy`, so the defaults live here only; `RagTrainingOptions` are the `--kb` flags.
A test fails when a flag and a field drift apart (tests/test_cli_settings.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lawtune.settings import validate

Format = Literal["auto", "csv", "alpaca", "query_response", "sharegpt", "conversations"]


class PreparePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Format = Field("auto", description="auto | csv | alpaca | query_response | sharegpt | conversations")
    encoding: str | None = Field(None, description="input encoding (default: detect utf-8 / utf-8-sig / gb18030)")
    user_text: Literal["title", "question", "both"] = Field(
        "both", description="CSV user turn: title | question | both (title + body unless the body copies it)"
    )
    is_best: Literal["all", "best", "best-per-title"] = Field(
        "all", description="CSV answers: all | best (is_best=1 only) | best-per-title (one per title, best first)"
    )
    system_prompt: str | None = Field(None, description="system turn added to conversations without one")
    min_chars: int = Field(4, ge=0, description="drop rows whose question or answer has fewer characters")
    max_chars: int = Field(4000, ge=0, description="drop rows whose question or answer has more characters (0 = no limit)")
    dedupe: bool = Field(True, description="drop repeats of the same normalized question + answer")
    clean: bool = Field(True, description="strip HTML tags/entities, zero-width characters, whitespace runs")
    seed: int = Field(0, description="salt of the split hash (another seed gives another split)")
    dev_ratio: float = Field(0.05, gt=0, lt=1, description="share of questions in dev.jsonl")
    test_ratio: float = Field(0.05, gt=0, lt=1, description="share of questions in test.jsonl")

    @model_validator(mode="after")
    def _check(self) -> "PreparePolicy":
        if self.dev_ratio + self.test_ratio >= 1:
            raise ValueError(f"dev_ratio + test_ratio must be below 1 (got {self.dev_ratio} + {self.test_ratio})")
        if self.max_chars and self.max_chars < self.min_chars:
            raise ValueError(f"max_chars ({self.max_chars}) is below min_chars ({self.min_chars})")
        return self


class RagTrainingOptions(BaseModel):
    """`lawtune prepare --kb`: part of train.jsonl rewritten in the `--kb` prompt format (lawtune.kb.rag_examples)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kb: Path | None = Field(None, description="knowledge base: rewrite --rag-share of train.jsonl in the --kb prompt format (articles retrieved for real; lines with gold articles from meta.laws or the answer's citations)")
    rag_share: float = Field(0.5, gt=0, le=1, description="share of training questions asked with articles (with --kb; only those with gold articles are rewritten)")
    rag_no_gold: float = Field(0.5, ge=0, le=1, description="when retrieval misses the gold: share left without it (the answer then says the material does not fit); the others get it injected (with --kb)")
    kb_k: int = Field(3, ge=1, description="articles per RAG training prompt (with --kb)")


def parse_policy(options: dict[str, Any], *, as_flags: bool = False) -> PreparePolicy:
    """Validate options; every problem is reported at once, unknown names with the nearest valid one
    (`as_flags`: named as the CLI flags, `--dev-ratio`)."""
    return validate(PreparePolicy, options, "prepare", as_flags=as_flags)
