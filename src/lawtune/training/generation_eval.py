"""Optional generation metric during training: ROUGE-L (jieba words, F×100) on min(N, len(dev)) dev rows.

Turned on by `training_args.predict_with_generate: true` (ChatGLM3's switch; 50 rows) or `eval.generate_rows`.
The answers are generated from the dev questions with the run's template by the evaluation package
(`lawtune.evaluation.generation.generate`: the same prompt cut and decoding code as `lawtune eval`), plain
greedy with no repetition control, one question at a time, and scored by `lawtune.evaluation.metrics`. The
score is added to metrics.jsonl as `eval_rouge-l` at the eval's step and can drive
`metric_for_best_model: rouge-l`. Dev loss stays the cheap default: generating is slow on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from transformers import TrainerCallback

from lawtune.data.conversations import read_examples
from lawtune.evaluation.generation import GenerationSettings, generate
from lawtune.evaluation.metrics import rouge_f
from lawtune.modeling.chat import ChatFormat
from lawtune.modeling.decoding import DecodingPolicy
from lawtune.modeling.runs import METRICS_FILE

# What this metric has always measured: greedy answers, nothing added to the logits, no repetition stop.
PLAIN_GREEDY = DecodingPolicy(repetition_penalty=1.0, repetition_stop=False)


class GenerationEval(TrainerCallback):
    def __init__(self, run_dir: Path, chat: ChatFormat, dev_file: str, rows: int, max_new_tokens: int, max_input_length: int):
        self.run_dir = Path(run_dir)
        self.chat = chat
        self.settings = GenerationSettings(max_new_tokens=max_new_tokens, decoding=PLAIN_GREEDY,
                                           max_input_length=max_input_length, batch_size=1)
        examples = read_examples(dev_file, rows, strict=False)  # min(rows, len(dev))
        self.examples = [e for e in examples if any(m["role"] == "assistant" for m in e.messages)]

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if not state.is_world_process_zero or not self.examples:
            return
        was_training = model.training
        model.eval()
        loaded = SimpleNamespace(model=model, tokenizer=self.chat.tokenizer, chat=self.chat)  # what generate reads
        outputs = generate(loaded, [e.prompt for e in self.examples], self.settings, show_progress=False)
        if was_training:
            model.train()
        scores = [rouge_f(output.text, e.reference)["rouge-l"] for output, e in zip(outputs, self.examples)]
        score = sum(scores) / len(scores)
        if metrics is not None:
            metrics["eval_rouge-l"] = score  # seen by the callbacks after this one (best adapter)
        with (self.run_dir / METRICS_FILE).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": state.global_step, "eval_rouge-l": score, "eval_generated": len(scores)}) + "\n")
