"""What only the PostgreSQL backend has: URLs through the CLI, connection errors, the atomic swap, tokens as lexemes.

The retrieval tests themselves run on both backends (conftest.BACKENDS); these need the `postgres_server`
fixture (a real server) except the unreachable-server test.
"""

import json
import os

import pytest
from typer.testing import CliRunner

from lawtune.cli import app
from lawtune.errors import LawtuneError
from lawtune.kb import Item, open_store

if not os.environ.get("CI"):  # in CI a missing driver fails the tests instead (make test installs it)
    pytest.importorskip("psycopg", reason="PostgreSQL backend: `pip install 'lawtune[postgres]'` (make test does)")
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_unreachable_server_is_a_clear_error():
    from live_server import free_port

    url = f"postgresql://lawtune:secret@127.0.0.1:{free_port()}/kb"  # nothing listens there
    with pytest.raises(LawtuneError) as error:
        open_store(url)
    message = str(error.value)
    assert message.startswith(url.replace(":secret@", ":***@") + ": cannot connect to PostgreSQL")
    assert "secret" not in message and "start the server" in message


def test_database_without_a_kb(postgres_server):
    with pytest.raises(LawtuneError, match="no lawtune knowledge base in this database.*kb build -o"):
        open_store(postgres_server.url("postgres"))


def test_cli_build_search_add_check(postgres_server, tmp_path):
    url = postgres_server.create_database("cli")
    law = tmp_path / "示例法(2020-01-01).md"
    law.write_text("# 中华人民共和国示例法\n\n<!-- INFO END -->\n\n第一条 养蜂人应当设置警示标志。\n\n第二条 示例条文。\n",
                   encoding="utf-8")
    result = invoke("kb", "build", law, "-o", url)
    assert result.exit_code == 0, result.output
    assert f"{url}: 2 articles, 0 Q&A pairs" in result.output
    again = invoke("kb", "build", law, "-o", url)
    assert isinstance(again.exception, LawtuneError) and "already holds a knowledge base" in str(again.exception)
    assert invoke("kb", "build", law, "-o", url, "--force").exit_code == 0

    result = invoke("kb", "search", url, "养蜂 警示", "-k", "1", "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.splitlines()[0])
    assert (row["law"], row["article"], row["sub"], row["exact"]) == ("示例法", 1, 0, False)

    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"conversations": [{"role": "user", "content": "邻居家的猫抓伤了孩子怎么办？"},
                                                {"role": "assistant", "content": "找动物饲养人赔偿。"}]},
                             ensure_ascii=False) + "\n", encoding="utf-8")
    result = invoke("kb", "add", url, qa)
    assert result.exit_code == 0 and f"{url}: added 1 items" in result.output
    row = json.loads(invoke("kb", "search", url, "猫抓伤孩子", "-k", "1", "--json").output.splitlines()[0])
    assert row["kind"] == "qa"

    answers = tmp_path / "answers.txt"
    answers.write_text("《示例法》第二条\n《示例法》第九条\n", encoding="utf-8")
    summary = json.loads(invoke("kb", "check", url, answers, "--json").output)
    assert summary["verdicts"]["ok"] == 1 and summary["verdicts"]["nonexistent_article"] == 1


def test_failed_build_keeps_the_old_kb(postgres_server, tmp_path):
    from lawtune.kb.postgres_store import PostgresStore

    url = postgres_server.create_database("swap")
    PostgresStore.build(url, [Item(kind="qa", question="问", text="旧的答案")])

    def items():
        yield Item(kind="qa", question="问", text="新的答案")
        raise RuntimeError("source broke mid-build")

    with pytest.raises(RuntimeError):
        PostgresStore.build(url, items())
    with pytest.raises(LawtuneError, match="no articles or Q&A pairs"):
        PostgresStore.build(url, [])
    with open_store(url) as store:
        assert store.count() == {"qa": 1} and store.text_search("答案", 1)[0].item.text == "旧的答案"
        schemas = [s for (s,) in store.db.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'lawtune%'")]
    assert schemas == ["lawtune_kb"]  # no half-built schema left behind


def test_tokens_are_lexemes_unchanged(postgres_server):
    # the 'simple' parser must keep each token of tokenize.py as exactly one lexeme, or queries miss
    import psycopg

    from lawtune.kb.tokenize import tokenize

    text = "《劳动合同法》第82条：用人单位ISO9001认证、3.5倍工资；e-mail x_y 离婚"
    tokens = tokenize(text)
    with psycopg.connect(postgres_server.url("postgres")) as conn:
        lexemes = conn.execute("SELECT tsvector_to_array(to_tsvector('simple', %s))", (" ".join(tokens),)).fetchone()[0]
    assert sorted(lexemes) == sorted(set(tokens))
