"""`lawtune kb ...` end to end through the real root app (CliRunner; errors as `lawtune.cli.main` prints them)."""

import json

import pytest
from typer.testing import CliRunner

from lawtune.cli import app

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def error_of(result) -> str:
    """The one-line message `lawtune.cli.main` would print for a LawtuneError."""
    from lawtune.errors import LawtuneError

    assert isinstance(result.exception, LawtuneError), result.output
    return str(result.exception)


@pytest.fixture(scope="module")
def kb_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "kb.sqlite"
    result = invoke("kb", "build", "-o", path)
    assert result.exit_code == 0, result.output
    assert "articles" in result.output
    return path


@pytest.mark.parametrize("command", ["build", "add", "search", "check"])
def test_help(command):
    result = invoke("kb", command, "--help")
    assert result.exit_code == 0 and "Example" in result.output


def test_search_json(kb_file):
    result = invoke("kb", "search", kb_file, "《中华人民共和国劳动合同法》第八十二条", "-k", "3", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert len(rows) == 3
    assert {"law", "article", "sub", "score", "text"} <= set(rows[0])
    assert (rows[0]["law"], rows[0]["article"], rows[0]["sub"]) == ("劳动合同法", 82, 0)
    assert isinstance(rows[0]["score"], float) and rows[0]["text"].startswith("第八十二条")


def test_search_text(kb_file):
    # the three hits come from 民法典's chapter on divorce (第一千零七十六至一千零九十二条: registration, its
    # cooling-off period, divorce by lawsuit, ...); text output, then the same ranking as JSON to read the numbers
    result = invoke("kb", "search", kb_file, "离婚需要什么材料", "-k", "3")
    assert result.exit_code == 0 and result.output.count("《民法典》第一千零") == 3
    rows = [json.loads(line) for line in invoke("kb", "search", kb_file, "离婚需要什么材料", "-k", "3", "--json").output.splitlines()]
    assert all(row["law"] == "民法典" and 1076 <= row["article"] <= 1092 for row in rows)


def test_add_qa_then_search(kb_file, tmp_path):
    kb = tmp_path / "kb.sqlite"
    kb.write_bytes(kb_file.read_bytes())
    qa = tmp_path / "train.jsonl"
    qa.write_text(json.dumps({"conversations": [
        {"role": "system", "content": "你是律师"},
        {"role": "user", "content": "邻居家的猫抓伤了我的孩子怎么办？"},
        {"role": "assistant", "content": "可以要求动物饲养人承担侵权责任。"}]}, ensure_ascii=False) + "\n", encoding="utf-8")
    result = invoke("kb", "add", kb, qa)
    assert result.exit_code == 0 and "added 1" in result.output
    result = invoke("kb", "search", kb, "猫抓伤孩子", "-k", "1", "--json")
    row = json.loads(result.output.splitlines()[0])
    assert row["kind"] == "qa" and row["question"].startswith("邻居家的猫")


def test_build_from_files_with_qa(tmp_path):
    law = tmp_path / "示例法(2020-01-01).md"
    law.write_text("# 中华人民共和国示例法\n\n<!-- INFO END -->\n\n第一条 示例条文。\n", encoding="utf-8")
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"conversations":[{"role":"user","content":"问"},{"role":"assistant","content":"答"}]}\n', encoding="utf-8")
    out = tmp_path / "kb.sqlite"
    result = invoke("kb", "build", law, qa, "-o", out)
    assert result.exit_code == 0 and "1 articles, 1 Q&A pairs" in result.output
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    assert "already exists" in error_of(invoke("kb", "build", law, "-o", out))


def test_a_failed_build_leaves_no_file_and_no_temporary_behind(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    assert "no conversations in the file" in error_of(invoke("kb", "build", empty, "-o", tmp_path / "kb.sqlite"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.jsonl"]


def test_check(kb_file, tmp_path):
    predictions = tmp_path / "predictions.jsonl"
    rows = [{"prompt": "q", "prediction": "依据《劳动合同法》第八十二条。"},
            {"prompt": "q", "prediction": "《中华人民共和国丧葬保险法》第三条和《合同法》第五十二条"},
            {"prompt": "q", "prediction": "无"}]
    predictions.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    result = invoke("kb", "check", kb_file, predictions, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["citations"] == 3 and summary["answers_with_citations"] == 2
    assert summary["verdicts"]["unknown_law"] == 1 and summary["verdicts"]["repealed"] == 1
    assert summary["citation_precision"] == pytest.approx(1 / 3, abs=1e-4)
    text = invoke("kb", "check", kb_file, predictions, "--details")
    assert "unknown_law" in text.output and "citation precision: 0.333" in text.output


def test_bad_inputs(kb_file, tmp_path):
    assert "no such knowledge base" in error_of(invoke("kb", "search", tmp_path / "missing.sqlite", "x"))
    not_kb = tmp_path / "not_kb.sqlite"
    not_kb.write_text("hello", encoding="utf-8")
    assert "not a lawtune knowledge base" in error_of(invoke("kb", "search", not_kb, "x"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prediction": "ok"}\n{broken\n', encoding="utf-8")
    assert f"{bad}:2: not valid JSON" in error_of(invoke("kb", "check", kb_file, bad))
    no_field = tmp_path / "nofield.jsonl"
    no_field.write_text('{"answer": "x"}\n', encoding="utf-8")
    assert "no string field 'prediction'" in error_of(invoke("kb", "check", kb_file, no_field))
    assert "no such file" in error_of(invoke("kb", "add", kb_file, tmp_path / "missing.jsonl"))
    bad_qa = tmp_path / "qa.jsonl"
    bad_qa.write_text('{"conversations": []}\n', encoding="utf-8")
    assert f"{bad_qa}:1:" in error_of(invoke("kb", "add", kb_file, bad_qa))


def test_cli_error_is_one_red_line(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", "from lawtune.cli import main; main()", "kb", "search",
                             str(tmp_path / "missing.sqlite"), "x"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and len(result.stderr.strip().splitlines()) == 1


# ---- kb search --queries: many questions, one process, one JSON line each (both backends via built_kb)

def test_search_queries_plain_and_jsonl(built_kb, tmp_path):
    _backend, location = built_kb
    queries = tmp_path / "q.txt"
    queries.write_text("离婚需要什么材料\n\n"
                       + json.dumps({"id": "a7", "question": "《中华人民共和国劳动合同法》第八十二条"}, ensure_ascii=False) + "\n"
                       + json.dumps({"query": "民法典第一千零七十六条"}, ensure_ascii=False) + "\n", encoding="utf-8")
    result = invoke("kb", "search", location, "--queries", queries, "--json", "-k", "3")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["question"] for r in rows] == ["离婚需要什么材料", "《中华人民共和国劳动合同法》第八十二条", "民法典第一千零七十六条"]
    assert "id" not in rows[0] and rows[1]["id"] == "a7"
    assert all(len(r["hits"]) == 3 for r in rows)
    assert (rows[1]["hits"][0]["law"], rows[1]["hits"][0]["article"], rows[1]["hits"][0]["exact"]) == ("劳动合同法", 82, True)
    assert (rows[2]["hits"][0]["law"], rows[2]["hits"][0]["article"]) == ("民法典", 1076)
    # each line holds exactly what a single search prints
    single = invoke("kb", "search", location, "离婚需要什么材料", "--json", "-k", "3")
    assert [json.loads(line) for line in single.stdout.splitlines()] == rows[0]["hits"]


def test_search_queries_articles_only_and_order(built_kb, tmp_path):
    _backend, location = built_kb
    questions = [f"民法典第{n}条" for n in range(1080, 1040, -1)]  # 40: past the progress-bar threshold
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"id": i, "question": q}, ensure_ascii=False) + "\n"
                               for i, q in enumerate(questions)), encoding="utf-8")
    result = invoke("kb", "search", location, "--queries", queries, "--json", "-k", "1", "--articles-only")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == list(range(40))
    assert [r["hits"][0]["article"] for r in rows] == list(range(1080, 1040, -1))
    assert all(h["kind"] == "article" for r in rows for h in r["hits"])


@pytest.mark.parametrize(("content", "message"), [
    ("离婚\n{\"question\": \"x\"\n", "q.txt:2: not valid JSON"),
    ("离婚\n\n{\"text\": \"x\"}\n", "q.txt:3: needs a non-empty string field \"question\""),
    ("{\"question\": \"  \"}\n", "q.txt:1: \"question\" must be a non-empty string"),
    ("{\"query\": 7}\n", "q.txt:1: \"query\" must be a non-empty string, not 7"),
    ("{\"question\": \"x\", \"id\": [1]}\n", "q.txt:1: \"id\" must be a string or an integer"),
    ("\n\n", "q.txt: no questions"),
])
def test_search_queries_bad_line(kb_file, tmp_path, content, message):
    queries = tmp_path / "q.txt"
    queries.write_text(content, encoding="utf-8")
    assert message in error_of(invoke("kb", "search", kb_file, "--queries", queries, "--json"))


def test_search_needs_query_or_queries(kb_file, tmp_path):
    assert "give a QUERY or --queries FILE" in error_of(invoke("kb", "search", kb_file))
    queries = tmp_path / "q.txt"
    queries.write_text("离婚\n", encoding="utf-8")
    assert "one of them" in error_of(invoke("kb", "search", kb_file, "离婚", "--queries", queries))
    assert "no such queries file" in error_of(invoke("kb", "search", kb_file, "--queries", tmp_path / "none.txt"))
    assert "--articles-only with --kind qa" in error_of(invoke("kb", "search", kb_file, "离婚", "--articles-only", "--kind", "qa"))
