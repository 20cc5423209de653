"""Counts for `lawtune prepare`: rows read, kept, dropped by reason (with lines), lengths; and the summary.

    from lawtune.data.report import Tally, print_summary
    tally = Tally(); tally.drop("duplicate", "qa.csv", 12); tally.keep("qa.csv", messages)
    print_summary(report_dict)

Memory stays flat: lengths are kept as a histogram (character count -> rows), and at most
`MAX_LINES_PER_REASON` line references are stored per reason while the counts stay exact.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from lawtune.data.records import REASONS

MAX_LINES_PER_REASON = 1000
# An answer that ends without one of these ends mid-sentence (often cut off in the source): kept, but
# counted, because training on it teaches the model to stop mid-sentence.
ANSWER_ENDINGS = frozenset("。！？；!?;.…）)」』\"”'’》】")
PERCENTILES = (50, 90, 99)


class Tally:
    """Running counts; `read == kept + sum(dropped)` after every row."""

    def __init__(self) -> None:
        self.read = 0
        self.kept = 0
        self.dropped: Counter[str] = Counter()
        self.lines: dict[str, list[str]] = defaultdict(list)
        self.per_source: dict[str, Counter[str]] = defaultdict(Counter)
        self.lengths = {"user": Counter(), "assistant": Counter()}
        self.mid_sentence: list[str] = []  # source:line of kept answers that end mid-sentence

    def drop(self, reason: str, source: str, line: int) -> None:
        self.read += 1
        self.dropped[reason] += 1
        self.per_source[source]["read"] += 1
        if len(self.lines[reason]) < MAX_LINES_PER_REASON:
            self.lines[reason].append(f"{source}:{line}")

    def keep(self, source: str, messages: list[dict[str, str]], line: int | None = None) -> None:
        self.read += 1
        self.kept += 1
        answer = next((t["content"] for t in reversed(messages) if t["role"] == "assistant"), "").rstrip()
        if answer and answer[-1] not in ANSWER_ENDINGS:
            self.mid_sentence.append(f"{source}:{line}")
        self.per_source[source]["read"] += 1
        self.per_source[source]["kept"] += 1
        for role in ("user", "assistant"):
            self.lengths[role][sum(len(t["content"]) for t in messages if t["role"] == role)] += 1

    def summary(self) -> dict[str, Any]:
        dropped = {reason: self.dropped[reason] for reason in REASONS if self.dropped[reason]}
        return {
            "rows_read": self.read,
            "kept": self.kept,
            "dropped": dropped,
            "dropped_total": sum(dropped.values()),
            "dropped_lines": {reason: self.lines[reason] for reason in dropped},
            "dropped_lines_cap": MAX_LINES_PER_REASON,
            "lengths_chars": {role: percentiles(hist) for role, hist in self.lengths.items()},
            "answers_ending_mid_sentence": len(self.mid_sentence),
            "answers_ending_mid_sentence_lines": self.mid_sentence[:MAX_LINES_PER_REASON],
        }


def percentiles(histogram: Counter[int]) -> dict[str, float | int]:
    """min / p50 / p90 / p99 / max / mean of a length histogram (nearest-rank percentiles)."""
    total = sum(histogram.values())
    if not total:
        return {}
    ordered = sorted(histogram.items())
    result: dict[str, float | int] = {"min": ordered[0][0]}
    for p in PERCENTILES:
        rank, seen = max(1, -(-total * p // 100)), 0
        for length, count in ordered:
            seen += count
            if seen >= rank:
                result[f"p{p}"] = length
                break
    result["max"] = ordered[-1][0]
    result["mean"] = round(sum(length * count for length, count in ordered) / total, 1)
    return result


def print_summary(report: dict[str, Any]) -> None:
    """The short human summary of a report (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    splits = report["splits"]
    console.print(
        f"[bold]prepare[/bold]: read {report['rows_read']:,} rows, kept {report['kept']:,}, "
        f"dropped {report['dropped_total']:,} → train {splits['train']:,} / dev {splits['dev']:,} / "
        f"test {splits['test']:,}  ([dim]{report['out_dir']}[/dim])"
    )
    if report["dropped"]:
        table = Table("dropped because", "rows", "first lines", box=None, padding=(0, 2))
        for reason, count in report["dropped"].items():
            table.add_row(reason, f"{count:,}", ", ".join(report["dropped_lines"][reason][:3]))
        console.print(table)
    lengths = Table("characters", "min", "p50", "p90", "p99", "max", "mean", box=None, padding=(0, 2))
    for role, stats in report["lengths_chars"].items():
        if stats:
            lengths.add_row(role, *(str(stats[k]) for k in ("min", "p50", "p90", "p99", "max", "mean")))
    console.print(lengths)
    if report.get("answers_ending_mid_sentence"):
        console.print(f"[yellow]{report['answers_ending_mid_sentence']:,} kept answers end mid-sentence[/yellow] "
                      f"(no final 。！？; a model trained on them learns to stop there): "
                      + ", ".join(report["answers_ending_mid_sentence_lines"][:3]))
