"""Citation-constrained decoding (lawtune.kb.cite_constrain) on the tiny model's real tokenizer and model.

The tiny tokenizer is byte-level: it writes 第 (and every Chinese numeral) in byte pieces, so these tests also
cover a `第` that arrives over several tokens. A "model" here is a bias toward the tokens of a text it wants to
write; the processor decides what it may write.
"""

from __future__ import annotations

import pytest
import torch

from lawtune.kb.cite_constrain import (CiteConstraint, CitationLogitsProcessor, article_grammar, fits, material_of,
                                       opens_reference)
from lawtune.kb.citations import find_citations
from lawtune.kb.names import LawNames
from lawtune.kb.store import Hit, Item
from lawtune.modeling.decoding import DecodingPolicy
from lawtune.modeling.loading import load_tokenizer

CIVIL, CRIMINAL = "中华人民共和国民法典", "中华人民共和国刑法"
NAMES = LawNames([CIVIL, CRIMINAL, "中华人民共和国劳动合同法"])
MATERIAL = {CIVIL: ((80, 0), (1079, 0))}
PROMPT = [5, 6, 7]  # any prompt ids: the processor reads only what follows them
PLAIN = DecodingPolicy(repetition_penalty=1.0)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def article(law, number, sub=0, kind="article"):
    return Hit(Item(kind=kind, text="…", law=law.removeprefix("中华人民共和国"), law_full=law, article=number, sub=sub), 1.0)


def write(tokenizer, processor, start, wanted, steps=24, seed=0):
    """Greedy decoding of a 'model' that wants `start + wanted`: +100 for the next token of `wanted` (until the
    processor makes it go elsewhere), small random logits otherwise. Returns the text written."""
    noise = torch.randn(len(tokenizer), generator=torch.Generator().manual_seed(seed))
    generated, want = ids(tokenizer, start), ids(tokenizer, wanted)
    for step in range(steps):
        scores = noise.clone()
        if step < len(want):
            scores[want[step]] = 100.0
        logits = processor(torch.tensor([PROMPT + generated]), scores.unsqueeze(0))[0]
        generated.append(int(torch.argmax(logits)))
        if step < len(want) and generated[-1] != want[step]:
            want = want[:step + 1]  # pushed off what it wanted: from here it writes whatever is likeliest
    return tokenizer.decode(generated)


def processor(tokenizer, material=MATERIAL, policy=PLAIN):
    return CitationLogitsProcessor(tokenizer, NAMES, [material], len(PROMPT), [tokenizer.eos_token_id], policy)


def cited(text):
    return [(c.law_full, c.article, c.sub) for c in find_citations(text, NAMES) if c.article is not None]


# ----------------------------------------------------------------------------------------------------
# what opens a reference, what may follow
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, law", [
    ("依据《民法典》", CIVIL), ("依据民法典", CIVIL), ("《民法典》婚姻家庭编", CIVIL), ("《中华人民共和国民法典》的规定", CIVIL),
    ("《民法典》第八十条、", CIVIL), ("《民法典》第八十条至", CIVIL), ("《民法典》第八十条以及", CIVIL),
    ("《民法典》第八十条或者", CIVIL), ("依据民法典 ", CIVIL), ("《离婚协议书》", None)])
def test_a_di_after_a_law_or_a_list_opens_a_reference(text, law):
    assert opens_reference(text, NAMES) == (True, law)


@pytest.mark.parametrize("text", ["我认为", "《民法典》第八十条", "《刑法》规定：", "第三，"])
def test_elsewhere_a_di_is_just_a_character(text):
    assert opens_reference(text, NAMES)[0] is False


def test_the_grammar_lists_the_material_numbers_only():
    assert article_grammar([(80, 0), (82, 1)]) == 'start: "80条" | "82条之一" | "八十二条之一" | "八十条"\n'
    assert fits("八", ["八十条"]) and fits("八十条，", ["八十条"]) and not fits("九", ["八十条"])
    assert not fits("八十条之一", ["八十条"]) and fits("", ["八十条"])


def test_material_is_the_retrieved_articles_by_law():
    hits = [article(CIVIL, 1079), article(CIVIL, 80), article(CRIMINAL, 133, 1), article("", 0, kind="qa")]
    assert material_of(hits) == {CIVIL: ((80, 0), (1079, 0)), CRIMINAL: ((133, 1),)}
    constraint = CiteConstraint(NAMES, [hits, []])
    assert constraint.materials[1] is None  # nothing retrieved: asked without material, nothing to hold it to
    assert constraint.rows([1, 0]).materials == [None, constraint.materials[0]]


# ----------------------------------------------------------------------------------------------------
# decoding
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("start, wanted", [("依据《民法典》", "第八百条规定"), ("依据民法典", "第九十九条"),
                                           ("《民法典》第八十条、", "第九条"), ("依据《民法典》", "第1080条")])
def test_an_invented_article_number_cannot_be_decoded(tokenizer, start, wanted):
    text = write(tokenizer, processor(tokenizer), start, wanted)
    assert cited(text) and set(cited(text)) <= {(CIVIL, 80, 0), (CIVIL, 1079, 0)}, text
    # without the constraint the same 'model' writes what it wanted
    free = write(tokenizer, CiteConstraint(NAMES, materials=[None]).processor(tokenizer, len(PROMPT), [tokenizer.eos_token_id], PLAIN), start, wanted)
    assert free.startswith(start + wanted), free


@pytest.mark.parametrize("start, wanted", [("依据《民法典》", "第八十条规定"), ("依据民法典", "第一千零七十九条，"),
                                           ("《民法典》第八十条、", "第1079条")])
def test_a_retrieved_article_is_written_as_wanted(tokenizer, start, wanted):
    text = write(tokenizer, processor(tokenizer), start, wanted)
    assert text.startswith(start + wanted), text


def test_a_law_outside_the_material_is_named_alone_or_not_at_all(tokenizer):
    text = write(tokenizer, processor(tokenizer), "依据《刑法》", "第二十条")
    assert cited(text) == [] and not text.startswith("依据《刑法》第"), text
    # a law named alone, and text that cites nothing, go as wanted
    for start, wanted in (("依据《刑法》", "规定，应当赔偿。"), ("我认为", "第一，应当赔偿。")):
        assert write(tokenizer, processor(tokenizer), start, wanted).startswith(start + wanted)


def test_a_number_cannot_grow_into_another_article(tokenizer):
    """八十条 is in the material, 八十条之一 is not (Chinese 之 and numerals are byte pieces here: the Arabic
    digits show it)."""
    text = write(tokenizer, processor(tokenizer), "依据《民法典》", "第80条1款")
    assert text.startswith("依据《民法典》第80条") and cited(text) == [(CIVIL, 80, 0)], text


def test_outside_a_reference_the_answer_penalty_applies_inside_only_the_mask(tokenizer):
    policy = DecodingPolicy(repetition_penalty=2.0)
    scores = torch.full((len(tokenizer),), 4.0)
    inside = ids(tokenizer, "依据《民法典》第八")
    logits = processor(tokenizer, policy=policy)(torch.tensor([PROMPT + inside]), scores.clone().unsqueeze(0))[0]
    finite = logits[logits > float("-inf")]
    assert 0 < len(finite) < 10 and bool((finite == 4.0).all())  # only the bytes that go on to 八十条, unpenalized
    free = ids(tokenizer, "答案答案")
    logits = processor(tokenizer, policy=policy)(torch.tensor([PROMPT + free]), scores.clone().unsqueeze(0))[0]
    assert logits[free[0]] == 2.0 and bool((logits > float("-inf")).all())


def test_model_generate_under_the_constraint(tiny_model_dir):
    """The real path: model.generate with `decoding_hooks(..., cite=…)`, a bias toward an invented number first."""
    from lawtune.evaluation.generation import decoding_hooks
    from lawtune.modeling.loading import load_model

    loaded = load_model(str(tiny_model_dir))
    tokenizer = loaded.tokenizer
    prompt = ids(tokenizer, "问题：")  # the answer itself names the law, as an answer does
    want = ids(tokenizer, "依据《民法典》第八百条")

    class Wants:  # the 'model's wish: the next token of 依据《民法典》第八百条
        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - len(prompt)
            if step < len(want):
                scores[:, want[step]] += 1000.0
            return scores

    hooks = decoding_hooks(loaded, PLAIN, rows=1, prompt_width=len(prompt),
                           cite=CiteConstraint(NAMES, [[article(CIVIL, 80), article(CIVIL, 1079)]]))
    output = loaded.model.generate(input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                   max_new_tokens=len(want) + 4, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                   logits_processor=[Wants(), *hooks["logits_processor"]])
    text = tokenizer.decode(output[0, len(prompt):].tolist())
    assert text.startswith("依据《民法典》第八十条"), text


# ----------------------------------------------------------------------------------------------------
# the server's batcher (serve --kb): the same constraint as a per-sequence grammar
# ----------------------------------------------------------------------------------------------------


def write_batched(tokenizer, material, start, wanted, policy=PLAIN, steps=24, seed=0):
    """`write` through the batcher's own token choice (`serving.engines.batch.pick_token`) with a `CiteGrammar`
    on the sequence, as `serve --kb` decodes: the 'model' wants `start + wanted`."""
    from lawtune.kb.cite_constrain import CiteGrammar
    from lawtune.modeling.grammar import ll_tokenizer
    from lawtune.serving.engines.batch import Sequence, pick_token

    stop = [tokenizer.eos_token_id]
    grammar = CiteGrammar(ll_tokenizer(tokenizer, stop), NAMES, material, stop)
    seq = Sequence(prompt_ids=PROMPT, decoding=policy, stop_ids=frozenset(stop), grammar=grammar)
    for token in ids(tokenizer, start):  # the answer so far, as the batcher would have picked it
        grammar.consume_token(token)
        seq.generated.append(token)
    noise = torch.randn(len(tokenizer), generator=torch.Generator().manual_seed(seed))
    want = ids(tokenizer, wanted)
    for step in range(steps):
        scores = noise.clone()
        if step < len(want):
            scores[want[step]] = 100.0
        seq.generated.append(pick_token(scores, seq))
        if step < len(want) and seq.generated[-1] != want[step]:
            want = want[:step + 1]
    return tokenizer.decode(seq.generated)


def test_the_batcher_decodes_only_retrieved_article_numbers(tokenizer):
    invented = write_batched(tokenizer, MATERIAL, "依据《民法典》", "第八百条规定")
    assert cited(invented) and set(cited(invented)) <= {(CIVIL, 80, 0), (CIVIL, 1079, 0)}, invented
    assert write_batched(tokenizer, MATERIAL, "依据民法典", "第一千零七十九条，").startswith("依据民法典第一千零七十九条，")
    outside = write_batched(tokenizer, MATERIAL, "依据《刑法》", "第二十条")
    assert cited(outside) == [] and not outside.startswith("依据《刑法》第"), outside
    # asked without material (nothing retrieved): free, as eval decodes it
    assert write_batched(tokenizer, None, "依据《民法典》", "第八百条").startswith("依据《民法典》第八百条")


def test_the_batcher_skips_the_answer_penalty_inside_a_reference_only(tokenizer):
    from lawtune.kb.cite_constrain import CiteGrammar
    from lawtune.modeling.grammar import grammar_mask, ll_tokenizer

    stop = [tokenizer.eos_token_id]
    grammar = CiteGrammar(ll_tokenizer(tokenizer, stop), NAMES, MATERIAL, stop)
    assert grammar_mask(grammar, len(tokenizer)) is None and not grammar.in_block  # most steps: nothing masked
    for token in ids(tokenizer, "依据《民法典》第八"):
        grammar.consume_token(token)
    allowed = grammar_mask(grammar, len(tokenizer))
    assert grammar.in_block and 0 < int(allowed.sum()) < 10  # only what goes on to 八十条
