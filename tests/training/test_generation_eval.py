"""The training-time ROUGE-L callback generates through the evaluation package and scores with its metrics."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from lawtune.data.conversations import read_examples
from lawtune.evaluation.metrics import rouge_f
from lawtune.modeling.chat import ChatFormat, load_template
from lawtune.modeling.loading import load_base, load_tokenizer
from lawtune.training.generation_eval import GenerationEval


def test_score_is_plain_greedy_rouge_l_on_the_first_dev_rows(tiny_model_dir, conversation_files, tmp_path):
    chat = ChatFormat(load_tokenizer(tiny_model_dir), load_template("gemma"))
    model = load_base(tiny_model_dir)
    callback = GenerationEval(tmp_path, chat, str(conversation_files["dev"]), rows=3, max_new_tokens=8,
                              max_input_length=48)
    model.train()
    metrics: dict = {}
    callback.on_evaluate(None, SimpleNamespace(is_world_process_zero=True, global_step=4), None, metrics=metrics,
                         model=model)
    assert model.training  # put back in training mode

    # the same answers by hand: greedy model.generate on the chat-template prompt, stopped at end-of-turn; a
    # prompt longer than max_input_length keeps its BOS and its last tokens (the first dev row is 89 tokens)
    expected = []
    model.eval()
    for example in list(read_examples(conversation_files["dev"], 3)):
        full = chat.encode_prompt(example.prompt)
        assert full[0] == chat.tokenizer.bos_token_id
        ids = torch.tensor([full if len(full) <= 48 else [full[0], *full[-47:]]])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                                 eos_token_id=chat.stop_token_ids, pad_token_id=chat.tokenizer.pad_token_id)
        text = chat.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        expected.append(rouge_f(text, example.reference)["rouge-l"])
    assert metrics["eval_rouge-l"] == pytest.approx(sum(expected) / 3)
    event = json.loads((tmp_path / "metrics.jsonl").read_text(encoding="utf-8"))
    assert event == {"step": 4, "eval_rouge-l": metrics["eval_rouge-l"], "eval_generated": 3}
