"""Optional generation metric during training: ROUGE-L (jieba words, F×100) on min(N, len(dev)) dev rows.

Turned on by `training_args.predict_with_generate: true` (ChatGLM3's switch; 50 rows) or `eval.generate_rows`.
The answers are generated greedily from the dev questions with the run's template; the score is added to
metrics.jsonl as `eval_rouge-l` at the eval's step and can drive `metric_for_best_model: rouge-l`.
Dev loss stays the cheap default: generating is slow on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback

from lawtune.data.conversations import read_examples
from lawtune.modeling.chat import ChatFormat
from lawtune.modeling.runs import METRICS_FILE


def rouge_l(prediction: str, reference: str) -> float:
    import jieba
    from rouge_chinese import Rouge

    hyp, ref = " ".join(jieba.cut(prediction)).strip(), " ".join(jieba.cut(reference)).strip()
    if not hyp or not ref:
        return 0.0
    return Rouge().get_scores(hyp, ref)[0]["rouge-l"]["f"] * 100


class GenerationEval(TrainerCallback):
    def __init__(self, run_dir: Path, chat: ChatFormat, dev_file: str, rows: int, max_new_tokens: int, max_input_length: int):
        self.run_dir = Path(run_dir)
        self.chat = chat
        self.max_new_tokens = max_new_tokens
        conversations = [e.messages for e in read_examples(dev_file, rows, strict=False)]  # min(rows, len(dev))
        self.items = []
        for messages in conversations:
            last = max(i for i, m in enumerate(messages) if m["role"] == "assistant") if any(
                m["role"] == "assistant" for m in messages) else None
            if last is not None:
                prompt = chat.encode_prompt(messages[:last])[-max_input_length:]
                self.items.append((prompt, messages[last]["content"]))

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if not state.is_world_process_zero or not self.items:
            return
        scores = [rouge_l(self.generate(model, prompt), reference) for prompt, reference in self.items]
        score = sum(scores) / len(scores)
        if metrics is not None:
            metrics["eval_rouge-l"] = score  # seen by the callbacks after this one (best adapter)
        with (self.run_dir / METRICS_FILE).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": state.global_step, "eval_rouge-l": score, "eval_generated": len(scores)}) + "\n")

    def generate(self, model, prompt: list[int]) -> str:
        import torch

        was_training = model.training
        model.eval()
        with torch.no_grad():
            ids = torch.tensor([prompt], device=model.device)
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens,
                                 do_sample=False, use_cache=True, eos_token_id=self.chat.stop_token_ids,
                                 pad_token_id=self.chat.tokenizer.pad_token_id)
        if was_training:
            model.train()
        return self.chat.tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True)
