"""Generation trims the heap as it decodes (the KV cache's freed blocks), and the text does not change."""

from __future__ import annotations

import pytest

from lawtune.evaluation import generation
from lawtune.evaluation.generation import GenerationSettings, TrimHeapEvery, generate
from lawtune.modeling.loading import load_model

QUESTIONS = ["劳动合同到期不续签有补偿吗？", "房东不退押金怎么办？", "交通事故对方全责，我能要求哪些赔偿？"]


def test_the_trim_criterion_stops_no_row_and_trims_every_n_steps(monkeypatch):
    import torch

    trims = []
    monkeypatch.setattr(generation, "trim_heap", lambda: trims.append(1))
    hook = TrimHeapEvery(tokens=3)
    for _ in range(7):
        fired = hook(torch.zeros((2, 5), dtype=torch.long), None)
        assert fired.tolist() == [False, False]
    assert len(trims) == 2


@pytest.mark.integration
def test_generated_text_is_the_same_with_and_without_the_trims(tiny_run_dir, monkeypatch):
    loaded = load_model(tiny_run_dir, merge=True)
    prompts = [[{"role": "user", "content": q}] for q in QUESTIONS]
    settings = GenerationSettings(max_new_tokens=40, batch_size=2)
    trimmed = generate(loaded, prompts, settings, show_progress=False)
    calls = []
    monkeypatch.setattr(generation, "TrimHeapEvery", lambda: (lambda input_ids, scores, **kw: calls.append(1) or
                                                              __import__("torch").zeros(input_ids.shape[0], dtype=bool)))
    plain = generate(loaded, prompts, settings, show_progress=False)
    assert calls  # the replacement ran, so the first run had the real trims at the same place
    assert [(g.text, g.finish_reason, g.new_tokens) for g in trimmed] == [(g.text, g.finish_reason, g.new_tokens) for g in plain]
