"""`--kb` through `lawtune eval`, `compare`, `infer` and `chat` on the tiny model, with a KB of the bundled laws.

    .venv/bin/pytest tests/evaluation/test_rag_eval.py -q
"""

from __future__ import annotations

import json

import pytest

from lawtune.cli import app

from evaluation_helpers import invoke, runner

FAST = ["--max-new-tokens", "6", "--no-mcq"]


@pytest.fixture(scope="module")
def kb_file(tmp_path_factory):
    from lawtune.kb.build import build

    path = tmp_path_factory.mktemp("rag-kb") / "kb.sqlite"
    build([], path)  # the bundled laws: a second or two
    return path


def test_eval_with_kb_asks_with_articles_and_checks_citations(tiny_run_dir, qa_file, kb_file, tmp_path, monkeypatch):
    from lawtune.evaluation import evaluate
    from lawtune.fsutil import sha256_file
    from lawtune.kb.rag import INSTRUCTION, Rag

    asked = []
    real_generate = evaluate.generate

    def spy(loaded, conversations, settings, **kwargs):
        asked.extend(conversations)
        return real_generate(loaded, conversations, settings, **kwargs)

    monkeypatch.setattr(evaluate, "generate", spy)
    invoke("eval", tiny_run_dir, "--data", qa_file, "--out", tmp_path, *FAST, "--kb", kb_file, "--kb-k", "2")
    record = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert record["kb"]["path"] == str(kb_file) and record["kb"]["sha256"] == sha256_file(kb_file)
    assert record["kb"]["k"] == 2 and record["kb"]["items"]["article"] > 2000
    assert record["generation"]["max_input_length"] == 1536  # room for the articles by default
    assert {"citation_precision_pct", "nonexistent_citation_pct", "cited_answers_pct", "citations"} <= set(record["metrics"])
    assert {"retrieved_citation_pct", "retrieved_citation_n", "reference_agreement_pct", "reference_questions",
            "reference_retrieved_pct", "instruction_echo_pct"} <= set(record["metrics"])
    # each question went to the model in the RAG format, with exactly the articles recorded for it
    with Rag.open(kb_file, k=2) as rag:
        expected = [rag.augment([{"role": "user", "content": row["prompt"]}]) for row in rows]
    assert asked == [e.messages for e in expected]
    assert all(c[0] == {"role": "system", "content": INSTRUCTION} for c in asked)
    for row, augmented in zip(rows, expected):
        assert row["retrieved"] == augmented.references()
        assert list(row["retrieved"][0])[:5] == ["kind", "law", "article", "sub", "score"]
        assert isinstance(row["citations"], list)
    assert "[资料1]" not in rows[0]["prompt"]  # the report shows the user's question


def test_grounding_metrics_follow_the_answers(tiny_run_dir, kb_file, tmp_path):
    """Real eval on the tiny model; the metrics recomputed from what predictions.jsonl says was retrieved and cited."""
    data = tmp_path / "cited.jsonl"
    questions = [("劳动合同法第82条怎么规定的？", "依据《劳动合同法》第八十二条，应当支付二倍工资。"),
                 ("民法典第1079条规定了什么？", "《民法典》第一千零七十九条规定了诉讼离婚。"),
                 ("邻居的狗咬了人怎么办？", "可以要求赔偿。")]
    data.write_text("".join(json.dumps({"conversations": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
                                       ensure_ascii=False) + "\n" for q, a in questions), encoding="utf-8")
    invoke("eval", tiny_run_dir, "--data", data, "--out", tmp_path / "out", *FAST, "--kb", kb_file)
    record = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))["metrics"]
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    # the reference cites an article in the first two; the question names it, so retrieval puts it in the prompt
    assert record["reference_questions"] == 2 and record["reference_retrieved_pct"] == 100.0
    assert [r["grounding"].get("reference_articles") for r in rows] == [
        [["中华人民共和国劳动合同法", 82, 0]], [["中华人民共和国民法典", 1079, 0]], None]
    agree = sum(r["grounding"].get("agrees_with_reference", False) for r in rows)
    assert record["reference_agreement_pct"] == round(100 * agree / 2, 2)
    cited = sum(len(r["grounding"]["cited_articles"]) for r in rows)
    inside = sum(r["grounding"]["cited_in_retrieved"] for r in rows)
    assert record["retrieved_citation_n"] == cited
    assert record["retrieved_citation_pct"] == (round(100 * inside / cited, 2) if cited else 0.0)
    for row in rows:
        given = {(h["law"], h["article"], h["sub"]) for h in row["retrieved"]}
        short = {"中华人民共和国劳动合同法": "劳动合同法", "中华人民共和国民法典": "民法典"}
        assert row["grounding"]["cited_in_retrieved"] == sum(
            (short.get(law, law), article, sub) in given for law, article, sub in row["grounding"]["cited_articles"])


def test_check_kb_alone_checks_without_retrieval(tiny_run_dir, qa_file, kb_file, tmp_path):
    invoke("eval", tiny_run_dir, "--data", qa_file, "--out", tmp_path, *FAST, "--limit", "2", "--check-kb", kb_file)
    record = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert record["kb"]["path"] is None and record["kb"]["check"]["path"] == str(kb_file)
    assert record["generation"]["max_input_length"] == 512
    assert "citations" in rows[0] and "retrieved" not in rows[0] and "citations" in record["metrics"]


def test_compare_with_kb_reports_citation_rows(tiny_run_dir, qa_file, kb_file, tmp_path):
    result = invoke("compare", "base", tiny_run_dir, "--data", qa_file, "--out", tmp_path, *FAST, "--limit", "2",
                     "--kb", kb_file)
    assert "citation precision" in result.output and "tuned, no KB" in result.output
    for side in ("base", "tuned", "tuned-no-kb"):
        assert json.loads((tmp_path / side / "metrics.json").read_text(encoding="utf-8"))["kb"]["k"] == 3
    no_kb = [json.loads(line) for line in (tmp_path / "tuned-no-kb" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    no_kb_metrics = json.loads((tmp_path / "tuned-no-kb" / "metrics.json").read_text(encoding="utf-8"))
    assert all("retrieved" not in row and "citations" in row for row in no_kb)  # asked without the articles, checked
    assert "reference_agreement_pct" in no_kb_metrics["metrics"] and "retrieved_citation_pct" not in no_kb_metrics["metrics"]
    assert no_kb_metrics["mcq"] == {}
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "nonexistent citations %" in report and "| metric | base + KB (微调前) | tuned, no KB | tuned + KB (微调后) | Δ |" in report
    agreement = next(line for line in report.splitlines() if line.startswith("| cites the reference's article %"))
    assert agreement.count("|") == 6  # base + KB, tuned alone, tuned + KB, Δ
    retrieved = next(line for line in report.splitlines() if line.startswith("| cited articles among the retrieved %"))
    assert "| – |" in retrieved  # no retrieval without the KB
    assert "tuned, no KB" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_missing_kb_is_one_line_error(tiny_run_dir, qa_file, tmp_path):
    result = runner.invoke(app, ["eval", str(tiny_run_dir), "--data", str(qa_file), "--kb", str(tmp_path / "no.sqlite")])
    assert result.exit_code != 0 and "no such knowledge base" in str(result.exception)


def test_infer_and_chat_with_kb_show_the_articles(tiny_run_dir, kb_file):
    from lawtune.evaluation.generation import GenerationSettings
    from lawtune.evaluation.infer import chat_loop, infer
    from lawtune.kb.rag import Rag

    lines = []
    with Rag.open(kb_file) as rag:
        infer(str(tiny_run_dir), "劳动合同法第82条怎么规定的？", GenerationSettings(max_new_tokens=4), rag=rag,
              write=lambda *a, **k: lines.append(a[0] if a else ""))
    assert any("[资料1] 《劳动合同法》第八十二条" in line for line in lines)
    result = invoke("infer", tiny_run_dir, "--prompt", "离婚需要什么材料", "--max-new-tokens", "4", "--kb", kb_file)
    assert "[资料1] 《民法典》" in result.output

    questions = iter(["离婚需要什么材料", "/exit"])
    shown = []
    with Rag.open(kb_file) as rag:
        history = chat_loop(str(tiny_run_dir), GenerationSettings(max_new_tokens=4), read=lambda _: next(questions),
                            write=lambda *a, **k: shown.append(a[0] if a else ""), rag=rag)
    assert history[0] == {"role": "user", "content": "离婚需要什么材料"}  # the history keeps the plain question
    assert any("[资料1]" in line for line in shown)


@pytest.mark.parametrize("flag, on", [(None, True), ("--no-cite-constraint", False)])
def test_eval_with_kb_constrains_citations_unless_told_not_to(tiny_run_dir, qa_file, kb_file, tmp_path, monkeypatch, flag, on):
    from lawtune.evaluation import evaluate

    given = []
    real_generate = evaluate.generate

    def spy(loaded, conversations, settings, **kwargs):
        given.append(kwargs.get("cite"))
        return real_generate(loaded, conversations, settings, **kwargs)

    monkeypatch.setattr(evaluate, "generate", spy)
    invoke("eval", tiny_run_dir, "--data", qa_file, "--out", tmp_path, *FAST, "--limit", "2", "--kb", kb_file,
           *([flag] if flag else []))
    record = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert record["kb"]["cite_constraint"] is on
    if not on:
        assert given == [None]
        return
    # one material per question: the articles recorded as retrieved for it
    from lawtune.kb.laws import short_name

    (cite,) = given
    assert [{(short_name(law), a, s) for law, refs in m.items() for a, s in refs} for m in cite.materials] == [
        {(h["law"], h["article"], h["sub"]) for h in row["retrieved"]} for row in rows]


@pytest.mark.parametrize("flag, on", [(None, True), ("--no-attribute", False)])
def test_eval_reads_the_answer_with_the_articles_it_repeats_named(tiny_run_dir, kb_file, tmp_path, monkeypatch, flag, on):
    """The tiny model's answer is replaced by the first retrieved article's words (a random model never quotes);
    everything after generation — attribution, ROUGE, citations, grounding — runs for real on it."""
    from dataclasses import replace

    from lawtune.evaluation import evaluate
    from lawtune.kb.rag import Rag

    data = tmp_path / "q.jsonl"
    question, reference = "劳动合同法第82条怎么规定的？", "依据《劳动合同法》第八十二条，应当支付二倍工资。"
    data.write_text(json.dumps({"conversations": [{"role": "user", "content": question},
                                                  {"role": "assistant", "content": reference}]}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    with Rag.open(kb_file) as rag:
        first = rag.augment([{"role": "user", "content": question}]).hits[0].item
    quote = first.text.split(" ", 1)[-1][:40]  # the article's words, without its number
    real_generate = evaluate.generate

    def quoting(loaded, conversations, settings, **kwargs):
        return [replace(o, text=quote) for o in real_generate(loaded, conversations, settings, **kwargs)]

    monkeypatch.setattr(evaluate, "generate", quoting)
    invoke("eval", tiny_run_dir, "--data", data, "--out", tmp_path / "out", *FAST, "--kb", kb_file, *([flag] if flag else []))
    record = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    (row,) = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert record["kb"]["attribute"] is on
    if not on:
        assert row["prediction"] == quote and row["quoted"] == [] and record["metrics"]["attributed_pct"] == 0.0
        return
    assert row["model_text"] == quote and row["prediction"] == f"{quote}\n\n依据：{first.cite()}"
    assert [(q["law"], q["article"]) for q in row["quoted"]] == [(first.law, first.article)]
    assert record["metrics"]["attributed_pct"] == 100.0
    assert row["grounding"]["cited_articles"] == [[first.law_full, first.article, first.sub]]
    assert row["grounding"]["agrees_with_reference"] is (first.article == 82)


def test_infer_prints_the_line_naming_what_the_answer_repeated(tiny_run_dir, kb_file, monkeypatch):
    """The tiny model's answer replaced by the retrieved article's words; the streamed answer is followed by the
    attribution line, and infer returns the attributed answer (as eval scores it)."""
    from dataclasses import replace

    from lawtune.evaluation import infer as infer_module
    from lawtune.evaluation.generation import GenerationSettings
    from lawtune.kb.rag import Rag

    question = "劳动合同法第82条怎么规定的？"
    with Rag.open(kb_file) as rag:
        first = rag.augment([{"role": "user", "content": question}]).hits[0].item
        quote = first.text.split(" ", 1)[-1][:40]
        real_answer = infer_module.answer
        monkeypatch.setattr(infer_module, "answer", lambda *a, **k: replace(real_answer(*a, **k), text=quote))
        lines = []
        text = infer_module.infer(str(tiny_run_dir), question, GenerationSettings(max_new_tokens=4), rag=rag,
                                  stream=True, write=lambda *a, **k: lines.append(a[0] if a else ""))
    assert text == f"{quote}\n\n依据：{first.cite()}"
    assert f"\n依据：{first.cite()}" in lines
