"""The options of `lawtune eval` / `compare` besides the decoding (`GenerationSettings`, `DecodingPolicy`): one
typed schema with the defaults and help the CLI flags are made from (`lawtune.settings.option`).

    from lawtune.evaluation.settings import EvalOptions
    EvalOptions().mcq_limit                 # 50: the default of --mcq-limit
    evaluate.run("runs/demo", "test.jsonl", options=EvalOptions(limit=30, kb="kb.sqlite"))

`evaluate.run` and `compare.run` take one `EvalOptions` (and one `GenerationSettings`), and
tests/test_cli_settings.py fails when a flag and a field drift apart. Only pydantic and `lawtune.kb.rag`'s
constants are imported, so the CLI can build its flags at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lawtune.kb.rag import DEFAULT_K, DEFAULT_MAX_CHARS

DEFAULT_MCQ = ("jecqa_single", "lawbench_1-2")
DEFAULT_MCQ_LIMIT = 50  # per set: ~1 s a question on a 2-core CPU with the default model


class EvalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_only: bool = Field(False, description="For a run folder: evaluate its base model, no adapter.")
    max_output_length: int = Field(512, description="Reference tokens scored for eval loss.")
    mcq: list[str] | None = Field(None, description="MCQ set: a bundled name (jecqa_single, lawbench_1-2) or a JSONL path; repeat it. Default: both bundled sets.")
    mcq_limit: int | None = Field(DEFAULT_MCQ_LIMIT, description="Questions used from each MCQ set (the bundled ones hold 200; ~1 s each on 2 CPU cores).")
    limit: int | None = Field(None, description="Use only the first N examples of --data.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="float32, bfloat16 or float16.")
    # retrieval-augmented answers (lawtune.kb.rag; docs/knowledge-base.md "Answers from the knowledge base")
    kb: Path | None = Field(None, description="Knowledge base (`lawtune kb build -o KB`): ask with the articles retrieved for each question, and check every answer's citations.")
    check_kb: Path | None = Field(None, description="Check citations against this KB (e.g. all of LawRefBook); alone: no retrieval, only the check.")
    kb_k: int = Field(DEFAULT_K, description="Articles retrieved per question with --kb.")
    kb_chars: int = Field(DEFAULT_MAX_CHARS, description="Characters kept of each retrieved article.")
    cite_constraint: bool = Field(True, description="With --kb: an article number after a law's name may only be one of the retrieved articles (citation-constrained decoding, lawtune.kb.cite_constrain).")
    attribute: bool = Field(True, description="With --kb: a retrieved article whose words the answer repeats is named in a last line when the answer does not cite it by number (lawtune.kb.attribution); every metric reads that answer.")
    # tool use (lawtune.evaluation.tool_eval; docs/tools.md "Measured")
    tool_data: Path | None = Field(None, description="A tool set (`lawtune tools generate` writes DIR/test.jsonl) measured besides --data: right tool, exact arguments, calls that parse, the figure in the final answer, no call where none is needed.")
    tools: Literal["builtin"] | None = Field(None, description="Offer every built-in tool with each tool question (default: the tools each record carries); with a --data whose records carry no tools, measure calls made on it.")
    tool_limit: int | None = Field(None, description="Use only the first N questions of --tool-data.")
