"""Built-in legal tools the assistant calls for figures and articles (docs/tools.md).

    from lawtune.tools import builtin_tools, run_tool_call
    tools = builtin_tools(kb=None)        # a KB's Retriever (e.g. rag.retriever) adds lookup_article and search_law
    outcome = run_tool_call(tools, "severance_pay", {"monthly_wage": 8000, "years": 3, "months": 5})
    outcome.ok, outcome.content["result"], outcome.message_content()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lawtune.tools.tool import Tool, ToolError, ToolOutcome, run_tool_call

if TYPE_CHECKING:
    from lawtune.kb.retrieval import Retriever

__all__ = ["Tool", "ToolError", "ToolOutcome", "builtin_tools", "run_tool_call"]


def builtin_tools(kb: "Retriever | None" = None) -> list[Tool]:
    """The calculators, plus article lookup and law search when a knowledge base is given."""
    from lawtune.tools import deadlines, labor

    functions = [labor.severance_pay, labor.double_wage_no_contract, labor.overtime_pay,
                 deadlines.arbitration_deadline, deadlines.litigation_deadline, labor.probation_limits,
                 labor.annual_leave_days]
    if kb is not None:
        from lawtune.tools.kb_tools import kb_functions

        functions += kb_functions(kb)
    return [Tool.from_function(function) for function in functions]
