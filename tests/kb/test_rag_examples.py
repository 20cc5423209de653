"""`lawtune prepare --kb`: training examples in the RAG format (gold articles + distractors, sometimes no gold).

    .venv/bin/pytest tests/kb/test_rag_examples.py -q
"""

from __future__ import annotations

import json
import random

from typer.testing import CliRunner

from lawtune.cli import app
from lawtune.kb.rag import INSTRUCTION, Rag
from lawtune.kb.rag_examples import gold_hits, rag_messages

LAWS = ["《民法典》第一千零七十六条：夫妻双方自愿离婚的，应当签订书面离婚协议……", "《民法典》第一千零七十八条：婚姻登记机关查明……",
        "《不存在法》第九条：……"]
QUESTION = "我跟我老公离婚需要我娘家的户口薄吗？"
TURNS = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "不需要。根据《民法典》第一千零七十六条……"}]


def test_gold_articles_plus_distractors(kb):
    rag = Rag(kb, k=3)
    assert [(h.item.law, h.item.article) for h in gold_hits(rag, LAWS)] == [("民法典", 1076), ("民法典", 1078)]
    messages, counts = rag_messages(rag, TURNS, LAWS, with_gold=True, rng=random.Random(0))
    assert counts == {"gold": 2, "distractors": 1}
    prompt = messages[0]["content"]
    assert prompt.startswith(INSTRUCTION) and prompt.endswith("问题：" + QUESTION)
    assert "《民法典》第一千零七十六条" in prompt and "《民法典》第一千零七十八条" in prompt and "[资料3]" in prompt
    assert messages[1] == TURNS[1]  # the answer is never changed
    messages, counts = rag_messages(rag, TURNS, LAWS, with_gold=False, rng=random.Random(0))
    assert counts == {"gold": 0, "distractors": 3}
    assert "第一千零七十六条（" not in messages[0]["content"] and "第一千零七十八条（" not in messages[0]["content"]


def test_prepare_with_kb_rewrites_a_share_of_train(built_kb, tmp_path):
    _backend, location = built_kb
    source = tmp_path / "cited.json"
    rows = [{"query": f"第{n}个问题：我跟我老公离婚需要带哪些材料去登记？", "laws": LAWS[:2], "response": f"回答{n}：需要身份证和结婚证。"}
            for n in range(40)]
    source.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    result = CliRunner().invoke(app, ["prepare", str(source), "-o", str(tmp_path / "out"), "--kb", str(location),
                                      "--rag-share", "0.5"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    rewritten = [line for line in lines if "rag" in line["meta"]]
    assert 0 < len(rewritten) < len(lines)  # about half, chosen by question hash
    assert all(line["conversations"][0]["content"].startswith(INSTRUCTION) for line in rewritten)
    assert all(not line["conversations"][0]["content"].startswith(INSTRUCTION) for line in lines if "rag" not in line["meta"])
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["rag"]["rewritten"] == len(rewritten) and report["rag"]["lines"] == len(lines)
    assert report["rag"]["with_gold"] + report["rag"]["without_gold"] == len(rewritten)
    for split in ("dev", "test"):  # eval adds the articles itself
        assert INSTRUCTION not in (tmp_path / "out" / f"{split}.jsonl").read_text(encoding="utf-8")
