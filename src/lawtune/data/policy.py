"""The options of `lawtune prepare`, with their defaults, in one typed schema.

    from lawtune.data.policy import PreparePolicy, parse_policy
    policy = parse_policy({"is_best": "best-per-title", "seed": 7})   # LawtuneError lists every bad option

The CLI flags and `lawtune.data.prepare.run(**options)` both go through `parse_policy`, so the defaults
live here only.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lawtune.errors import LawtuneError

Format = Literal["auto", "csv", "alpaca", "query_response", "sharegpt", "conversations"]


class PreparePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Format = "auto"
    encoding: str | None = Field(None, description="input encoding; None = detect utf-8 / utf-8-sig / gb18030")
    user_text: Literal["title", "question", "both"] = Field(
        "both", description="CSV: user turn from the title, the question body, or the title plus a body that is not a copy"
    )
    is_best: Literal["all", "best", "best-per-title"] = Field(
        "all", description="CSV: keep every answer, only is_best=1 answers, or one answer per title (best first)"
    )
    system_prompt: str | None = Field(None, description="system turn added to conversations that have none")
    min_chars: int = Field(4, ge=0, description="drop a row whose question or answer is shorter (characters)")
    max_chars: int = Field(4000, ge=0, description="drop a row whose question or answer is longer; 0 = no limit")
    dedupe: bool = Field(True, description="drop repeats of the same normalized question + answer")
    clean: bool = Field(True, description="strip HTML tags/entities, zero-width characters, whitespace runs")
    seed: int = Field(0, description="salt of the split hash; another seed gives another split")
    dev_ratio: float = Field(0.05, gt=0, lt=1)
    test_ratio: float = Field(0.05, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> "PreparePolicy":
        if self.dev_ratio + self.test_ratio >= 1:
            raise ValueError(f"dev_ratio + test_ratio must be below 1 (got {self.dev_ratio} + {self.test_ratio})")
        if self.max_chars and self.max_chars < self.min_chars:
            raise ValueError(f"max_chars ({self.max_chars}) is below min_chars ({self.min_chars})")
        return self


def parse_policy(options: dict[str, Any]) -> PreparePolicy:
    """Validate options; every problem is reported at once, unknown names with the nearest valid one."""
    try:
        return PreparePolicy(**options)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            name = ".".join(str(part) for part in item["loc"]) or "options"
            if item["type"] == "extra_forbidden":
                near = difflib.get_close_matches(name, PreparePolicy.model_fields, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                problems.append(f"unknown option {name!r}{hint}")
            elif not item["loc"]:  # a cross-field check: its message already names the values
                problems.append(item["msg"].removeprefix("Value error, "))
            else:
                problems.append(f"{name}: {item['msg']} (got {item.get('input')!r})")
        raise LawtuneError("invalid prepare options: " + "; ".join(problems)) from None
