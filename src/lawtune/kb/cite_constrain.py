"""Citation-constrained decoding for `--kb`: an article number may only be one of the articles in the prompt.

    from lawtune.kb.cite_constrain import CiteConstraint
    cite = CiteConstraint(checker.names, [augmented.hits for augmented in asked])   # one material per prompt
    outputs = generate(loaded, conversations, settings, cite=cite)                  # lawtune.evaluation.generation

The answer is free text (the answer's repetition control applies) until the model starts an article reference,
as `kb.citations.find_citations` reads one: `第` after a law's name (`《劳动合同法》第`, `劳动合同法第`,
`《民法典》婚姻家庭编第`, `…的规定第`) or after another reference of a list or range (`第八十二条、第`,
`第十条至第`). That `第` is only allowed when the law is one of the prompt's articles' laws, and from there the
number is decoded under an llguidance grammar of that law's articles in the material (`八十二条`, `82条`,
`八十二条之一`; no `之N` unless the material holds it), as `lawtune.tools.constrain` does for a tool call: the
same lazy scheme, free until a trigger, then constrained, then free again. So an article number the material
does not hold cannot be decoded; a law named alone (`《刑法》规定…`), a 款/项 after an article, and an answer that
cites nothing stay allowed. It stops invented article numbers; it does not make a retrieved article that does
not fit the question fit (that is the model's choice, `kb.grounding` measures it).

How a token can start a reference: its bytes hold `第` (28 tokens of Gemma's 262k; a byte-level tokenizer writes
it in pieces, which are followed too), found once per tokenizer. Tokens are grouped by the text before their
`第` (` 第`, `的第`, `第`, …): one probe per group and step, `find_citations(tail + prefix + "第一条")`, says
whether that `第` would open a reference and of which law — unless the text ends in a character no reference's
`第` can follow (most steps), which decides it without a probe.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lawtune.kb.citations import find_citations
from lawtune.kb.names import LawNames
from lawtune.kb.numerals import NUMERAL_CHARS, to_chinese

Material = dict[str, tuple[tuple[int, int], ...]]  # law full name → its (article, sub) in the prompt

TRIGGER = "第"
TRIGGER_BYTES = TRIGGER.encode()
TAIL_CHARS = 96  # answer text a probe reads before the `第`: the longest law name (60) plus its connector
PROBE = "第一条"  # appended to see whether a `第` there would open an article reference
EXTENDS = frozenset("之" + NUMERAL_CHARS)  # what would turn 第八十二条 into another reference (之N) or number
# what may sit right before the 第 of a reference besides a law name's last character (find_citations' REFS_RE):
# 》, …编, 的规定 / 规定的 / 的, the end of an earlier reference of a list (条, 款, 项, 之N, a bracket) and its separators
BEFORE_REFERENCE = frozenset("》编定的条款项）)" + "至到、，,和及者或与-—～~" + NUMERAL_CHARS + " \t\n\u3000")

_TRIGGER_VOCABS: dict[int, "TriggerVocab"] = {}
_GRAMMARS: dict[str, Any] = {}
_NAME_ENDS: "weakref.WeakKeyDictionary[LawNames, frozenset[str]]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def material_of(hits: Iterable[Any]) -> Material:
    """The articles a prompt holds, by law (search hits: Q&A items carry no article and are left out)."""
    articles: dict[str, set[tuple[int, int]]] = {}
    for hit in hits:
        item = hit.item
        if item.kind == "article" and item.law_full and item.article:
            articles.setdefault(item.law_full, set()).add((item.article, item.sub))
    return {law: tuple(sorted(refs)) for law, refs in articles.items()}


def article_forms(article: int, sub: int) -> list[str]:
    """How the number of one article may be written after `第`: Chinese numerals or Arabic digits, then 条."""
    tail = f"之{to_chinese(sub)}" if sub else ""
    return [f"{to_chinese(article)}条{tail}", f"{article}条{tail}"]


def article_grammar(refs: Sequence[tuple[int, int]]) -> str:
    """The llguidance Lark grammar of what follows `第` for one law: one of `refs`, written out."""
    import json

    forms = sorted({form for article, sub in refs for form in article_forms(article, sub)})
    return f"start: {' | '.join(json.dumps(form, ensure_ascii=False) for form in forms)}\n"


def _grammar(refs: Sequence[tuple[int, int]]) -> Any:
    import llguidance

    lark = article_grammar(refs)
    with _LOCK:
        if lark not in _GRAMMARS:
            _GRAMMARS[lark] = llguidance.LLMatcher.grammar_from_lark(lark)
        return _GRAMMARS[lark]


@dataclass
class TriggerVocab:
    """The tokens that can write `第` (3 bytes in UTF-8), found once per tokenizer from their bytes: whole (the
    token holds all of it), or in pieces as a byte-level tokenizer writes it (the tiny test tokenizer does).
    Texts are grouped by what a token writes before its `第`, so one probe serves the whole group."""

    whole: dict[str, list[tuple[int, str]]]  # text before 第 → [(token, text after 第)]
    starts: dict[str, list[int]]  # text before → tokens that end with the first 1 or 2 bytes of 第
    completes: dict[bytes, list[tuple[int, str]]]  # pending bytes → [(token that finishes 第, text after it)]
    continues: dict[bytes, list[int]]  # pending bytes → tokens that add to them without finishing 第
    # tokens that would make a finished number another one (八十二条 → 八十二条之一, 八十二条一): banned right after
    extenders: list[int]


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def trigger_vocab(ll: Any) -> TriggerVocab:
    """`TriggerVocab` of an llguidance tokenizer (`modeling.grammar.ll_tokenizer`), cached: a 262k vocabulary
    takes a second or two."""
    with _LOCK:
        if id(ll) in _TRIGGER_VOCABS:
            return _TRIGGER_VOCABS[id(ll)]
    vocab = TriggerVocab({}, {}, {TRIGGER_BYTES[:1]: [], TRIGGER_BYTES[:2]: []}, {TRIGGER_BYTES[:1]: [], TRIGGER_BYTES[:2]: []}, [])
    for token in range(ll.vocab_size):
        if ll.is_special_token(token):
            continue
        data = ll.decode_bytes([token])
        if _text(data[:3])[:1] in EXTENDS:
            vocab.extenders.append(token)
        at = data.find(TRIGGER_BYTES)
        if at >= 0:
            vocab.whole.setdefault(_text(data[:at]), []).append((token, _text(data[at + 3:])))
            continue
        for size in (2, 1):
            if data.endswith(TRIGGER_BYTES[:size]):
                vocab.starts.setdefault(_text(data[:-size]), []).append(token)
                break
        for pending in (TRIGGER_BYTES[:1], TRIGGER_BYTES[:2]):
            missing = TRIGGER_BYTES[len(pending):]
            if data.startswith(missing):
                vocab.completes[pending].append((token, _text(data[len(missing):])))
            elif data and missing.startswith(data):
                vocab.continues[pending].append(token)
    with _LOCK:
        _TRIGGER_VOCABS[id(ll)] = vocab
    return vocab


def pending_bytes(data: bytes) -> int:
    """How many bytes at the end of `data` are an unfinished UTF-8 character (0–3)."""
    for size in range(1, min(3, len(data)) + 1):
        lead = data[-size]
        if lead & 0xC0 != 0x80:  # not a continuation byte: the character's first byte
            need = 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4 if lead >> 3 == 0b11110 else 1
            return size if size < need else 0
    return 0


def opens_reference(text: str, names: LawNames) -> tuple[bool, str | None]:
    """Would a `第` written right after `text` open an article reference? (yes/no, the cited law's full name or
    None when the law is unknown). `text` is the end of an answer (TAIL_CHARS)."""
    if not text or (text[-1] not in BEFORE_REFERENCE and text[-1] not in _name_ends(names)):
        return False, None  # the common case, decided without a probe
    probe = text + PROBE
    citations = find_citations(probe, names)
    if not citations:
        return False, None
    last = citations[-1]
    # a list's references share their start and text: the span must end with the probe's own reference
    if last.start + len(last.text) != len(probe) or last.article != 1 or last.sub:
        return False, None
    return True, last.law_full


def _name_ends(names: LawNames) -> frozenset[str]:
    """The last characters of every name `names` knows (cached per LawNames)."""
    ends = _NAME_ENDS.get(names)
    if ends is None:
        ends = _NAME_ENDS[names] = frozenset(name[-1] for name in names.names())
    return ends


def fits(rest: str, forms: Sequence[str]) -> bool:
    """Can `rest` (what a token writes after its `第`) begin one of `forms` or run past one of them?"""
    rest = rest.rstrip("\ufffd")  # an unfinished character: the grammar judges it once it is written
    for form in forms:
        if form.startswith(rest):
            return True
        if rest.startswith(form) and rest[len(form):][:1] not in EXTENDS:
            return True
    return False


def allowed_ids(matcher: Any, vocab: int) -> Any:
    """The token ids the matcher allows next (a handful inside a reference), from its bitmask."""
    from lawtune.modeling.grammar import grammar_mask

    allowed = grammar_mask(matcher, vocab)  # an llguidance matcher's mask: a tensor, never None
    return allowed.nonzero().flatten()


def only(logits: Any, ids: Any) -> Any:
    """A float copy of `logits` with every token but `ids` at -inf (cheaper than a full mask for a few ids)."""
    import torch

    out = torch.full(logits.shape, float("-inf"), dtype=torch.float32, device=logits.device)
    out[ids] = logits[ids].float()
    return out


class CiteConstraint:
    """What the decoding needs: the law names (to read references) and each prompt's material."""

    def __init__(self, names: LawNames, hits_per_prompt: Sequence[Iterable[Any]] | None = None,
                 materials: Sequence[Material | None] | None = None):
        self.names = names
        # a prompt retrieval found nothing for was asked without material: nothing to hold it to (None)
        self.materials = (list(materials) if materials is not None
                          else [material_of(hits) if hits else None for hits in map(list, hits_per_prompt or [])])

    def rows(self, indices: Sequence[int]) -> "CiteConstraint":
        """The constraint for a batch: the materials of these prompts, in this order."""
        return CiteConstraint(self.names, materials=[self.materials[i] for i in indices])

    def processor(self, tokenizer: Any, prompt_width: int, stop_ids: Iterable[int], policy: Any) -> "CitationLogitsProcessor":
        return CitationLogitsProcessor(tokenizer, self.names, self.materials, prompt_width, stop_ids, policy)


class _Row:
    """One row's state: the answer's bytes so far, the open reference (its matcher) if any."""

    def __init__(self, material: Material | None):
        self.material = material or {}
        self.free = material is None  # asked without material: only the penalties
        self.forms = {law: [f for article, sub in refs for f in article_forms(article, sub)]
                      for law, refs in self.material.items()}
        self.read = 0  # generated tokens read
        self.data = b""  # the answer's bytes (stop tokens excluded)
        self.matcher: Any = None  # an open reference: the grammar of its law's articles in the material
        self.number_start = 0  # where the open reference's number starts in `data` (after its 第)
        self.law = ""  # the open reference's law
        self.closed = False  # a reference closed with the last token: nothing may extend its number
        self.ended = False  # the row emitted a stop token: what follows is generate()'s padding


class Follower:
    """Follows one answer token by token (a `_Row`) and says what it may write next: the logic both decoders share,
    the transformers logits processor (eval, infer, chat: one row per prompt) and the server's batcher
    (`CiteGrammar`: one per sequence)."""

    def __init__(self, ll: Any, names: LawNames, stop_ids: Iterable[int]):
        self.ll, self.names = ll, names
        self.stop_ids = frozenset(stop_ids)
        self.vocab = trigger_vocab(ll)

    def forbidden(self, state: _Row) -> list[int]:
        """Outside a reference: the tokens `banned` names, and right after a closed number those that would extend
        it. Nothing for an answer asked without material or already ended."""
        if state.free or state.ended:
            return []
        return self.banned(state) + (self.vocab.extenders if state.closed else [])

    def banned(self, state: _Row) -> list[int]:
        """Tokens that would write a `第` opening a reference the material cannot complete: of a law it does not
        hold, or with digits after the 第 that begin none of its article numbers."""
        pending = pending_bytes(state.data)
        tail = _text(state.data[:len(state.data) - pending])[-TAIL_CHARS:]
        banned: list[int] = []
        if pending:
            unfinished = state.data[-pending:]
            if unfinished not in self.vocab.completes:
                return banned
            opens, law = opens_reference(tail, self.names)
            if opens:
                forms = state.forms.get(law) if law else None
                banned.extend(t for t, rest in self.vocab.completes[unfinished] if not forms or not fits(rest, forms))
                if not forms:
                    banned.extend(self.vocab.continues[unfinished])
            return banned
        for prefix, tokens in self.vocab.whole.items():
            opens, law = opens_reference(tail + prefix, self.names)
            if opens:
                forms = state.forms.get(law) if law else None
                banned.extend(t for t, rest in tokens if not forms or not fits(rest, forms))
        for prefix, starting in self.vocab.starts.items():
            opens, law = opens_reference(tail + prefix, self.names)
            if opens and not (law and law in state.forms):
                banned.extend(starting)
        return banned

    def advance(self, state: _Row, token: int) -> None:
        """Read one generated token: the answer's bytes grow, a reference opens, goes on or closes."""
        if state.ended or token in self.stop_ids:
            # a finished row (or one the repetition stop cut) is padded from here: nothing more to follow
            state.ended, state.matcher = True, None
            return
        if state.free:
            return
        before, state.closed = len(state.data), False
        state.data += self.ll.decode_bytes([token])
        if state.matcher is not None:
            state.matcher.consume_token(token)
            self._maybe_close(state)
            return
        at = state.data.find(TRIGGER_BYTES, max(before - len(TRIGGER_BYTES) + 1, 0))
        if at < 0:
            return
        opens, law = opens_reference(_text(state.data[:at])[-TAIL_CHARS:], self.names)
        refs = state.material.get(law) if opens and law else None
        if refs:  # (no refs: not a reference, or one `banned` could not see coming)
            self._open(state, law, refs, at + len(TRIGGER_BYTES))

    def _open(self, state: _Row, law: str, refs: Sequence[tuple[int, int]], number_start: int) -> None:
        """Start the grammar at `number_start`, fed what the trigger token already wrote after its 第."""
        import llguidance

        matcher = llguidance.LLMatcher(self.ll, _grammar(refs), log_level=0)
        rest = state.data[number_start:]
        if rest:
            matcher.consume_tokens(self.ll.tokenize_bytes(rest))
        if not matcher.is_error():
            state.matcher, state.number_start, state.law = matcher, number_start, law
            self._maybe_close(state)

    @staticmethod
    def _maybe_close(state: _Row) -> None:
        """The reference ends once its number is complete (the grammar accepts)."""
        matcher = state.matcher
        if matcher.is_error():
            state.matcher = None
        elif matcher.is_accepting():
            number = _text(state.data[state.number_start:])
            state.matcher = None
            # nothing may extend the number, unless the material holds the longer one (八十二条之一): 之 stays free
            state.closed = not any(len(form) > len(number) and form.startswith(number) for form in state.forms[state.law])


class CitationLogitsProcessor:
    """A transformers logits processor: the answer's penalties outside a reference, the material's article
    numbers inside one (no penalty there: a number may repeat one the answer already cited)."""

    def __init__(self, tokenizer: Any, names: LawNames, materials: Sequence[Material | None], prompt_width: int,
                 stop_ids: Iterable[int], policy: Any):
        from lawtune.modeling.grammar import ll_tokenizer

        self.names, self.prompt_width, self.policy = names, prompt_width, policy
        self.stop_ids = frozenset(stop_ids)
        self.follower = Follower(ll_tokenizer(tokenizer, self.stop_ids), names, self.stop_ids)
        self.rows = [_Row(material) for material in materials]

    def in_reference(self, row: int) -> bool:
        return self.rows[row].matcher is not None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        from lawtune.modeling.decoding import penalize

        out = []
        for index in range(scores.shape[0]):
            state = self.rows[index]
            generated = input_ids[index, self.prompt_width:].tolist()
            for token in generated[state.read:]:
                self.follower.advance(state, token)
            state.read = len(generated)
            logits = row = scores[index]
            if state.matcher is not None:
                logits = only(logits, allowed_ids(state.matcher, logits.shape[-1]))
            elif not state.ended:
                if self.policy is not None and self.policy.penalizes:
                    logits = penalize(logits, generated, self.policy, self.stop_ids)  # a new tensor
                banned = self.follower.forbidden(state)
                if banned:
                    logits = logits.float().clone() if logits is row else logits.float()
                    logits[torch.tensor(banned, dtype=torch.long)] = float("-inf")
            out.append(logits.to(scores.dtype))
        return torch.stack(out)


class CiteGrammar:
    """The constraint for one sequence of the server's batcher (`serving.engines.batch.Sequence.grammar`, read by
    `modeling.grammar.grammar_mask`): `serve --kb` decodes article numbers as eval does. The batcher applies the
    answer's penalties itself, and none while `in_block` (inside a reference), as the logits processor does."""

    def __init__(self, ll: Any, names: LawNames, material: Material | None, stop_ids: Iterable[int]):
        self.follower = Follower(ll, names, stop_ids)
        self.state = _Row(material)
        self.vocab_size = ll.vocab_size

    @property
    def in_block(self) -> bool:
        return self.state.matcher is not None

    def allowed(self, vocab: int) -> Any:
        """The tokens allowed next as a bool tensor over `vocab` logits, or None for all of them (most steps)."""
        import torch

        from lawtune.modeling.grammar import grammar_mask

        if self.state.matcher is not None:
            return grammar_mask(self.state.matcher, vocab)
        banned = self.follower.forbidden(self.state)
        if not banned:
            return None
        allowed = torch.arange(vocab) < self.vocab_size  # rows past the tokenizer's vocabulary never
        allowed[torch.tensor(banned, dtype=torch.long)] = False
        return allowed

    def consume_token(self, token: int) -> None:
        self.follower.advance(self.state, token)
