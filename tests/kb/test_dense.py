"""The learned retriever: the encoder learns word associations BM25 cannot see; kb build trains and stores it;
kb add encodes new articles at once; search fuses it. Store-level tests run on both backends (conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

from lawtune.kb import dense, encoder as encoder_module, retrieval
from lawtune.kb.encoder import NgramEncoder, ngrams, train_encoder
from lawtune.kb.store import Item
from lawtune.kb.retrieval import Retriever

ARTICLES = [
    "夫妻双方自愿离婚的，应当签订书面离婚协议，并亲自到婚姻登记机关申请离婚登记。",
    "用人单位应当按照劳动合同约定和国家规定，向劳动者及时足额支付劳动报酬。",
    "机动车驾驶人饮酒后驾驶机动车的，处暂扣六个月机动车驾驶证，并处罚款。",
    "盗窃公私财物，数额较大的，或者多次盗窃的，处三年以下有期徒刑、拘役或者管制。",
]
# lay questions that share no character bigram with their article (老公/夫妻, 工资/劳动报酬, 喝酒/饮酒, 偷/盗窃)
PAIRS = [
    ("我和老公过不下去了想分开", [0]), ("老公和我想分开要去哪里办", [0]), ("跟老公分开要带什么", [0]),
    ("老板拖着工资不发怎么办", [1]), ("工资被老板扣了三个月", [1]), ("老板不给工资能告吗", [1]),
    ("喝酒以后开车被查到了", [2]), ("喝了酒开车会怎么罚", [2]), ("昨晚喝酒开车被交警拦了", [2]),
    ("偷了别人东西会坐牢吗", [3]), ("朋友偷东西被抓了", [3]), ("偷手机判几年", [3]),
]


def test_ngrams_are_characters_bigrams_and_latin_words():
    assert ngrams("离婚ABC 12") == ["离", "婚", "离婚", "abc", "12"]


def test_training_learns_what_bigrams_cannot_see():
    held_out = "老公要跟我分开"  # not a training question; its words were seen with article 0
    assert not set(ngrams(held_out)) & set(ngrams(ARTICLES[0])) - set("我要")
    encoder = train_encoder(ARTICLES, PAIRS * 20, dim=32, seed=0, epochs=30, max_steps=300)
    docs = encoder.encode(ARTICLES)
    for question, (gold,) in [*PAIRS, (held_out, [0])]:
        assert int(np.argmax(docs @ encoder.encode([question])[0])) == gold, question
    untrained = NgramEncoder(encoder.vocab, encoder.idf, np.random.default_rng(0).normal(size=encoder.weights.shape))
    docs = untrained.encode(ARTICLES)
    hits = sum(int(np.argmax(docs @ untrained.encode([q])[0])) == g for q, (g,) in PAIRS)
    assert hits < len(PAIRS)  # chance, not the perfect ranking training gives


def test_training_is_deterministic_and_round_trips():
    first = train_encoder(ARTICLES, PAIRS, dim=16, seed=3, epochs=5)
    second = train_encoder(ARTICLES, PAIRS, dim=16, seed=3, epochs=5)
    assert np.array_equal(first.weights, second.weights)
    loaded = NgramEncoder.from_bytes(first.to_bytes())
    assert np.allclose(loaded.encode(ARTICLES), first.encode(ARTICLES))
    assert not loaded.encode(["🙂"]).any()  # nothing known: a zero vector, not NaN


def test_many_texts_encode_as_each_alone():
    encoder = train_encoder(ARTICLES, PAIRS, dim=16, seed=1, epochs=5)
    texts = [*ARTICLES, *(q for q, _ in PAIRS), "🙂", ""]
    together = encoder.encode(texts)
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-5)
    assert not together[-2:].any()


def test_a_stack_of_encoders_reads_as_the_mean_of_their_cosines():
    members = [train_encoder(ARTICLES, PAIRS * 5, dim=16, seed=seed, epochs=5) for seed in (0, 1, 2)]
    assert not np.array_equal(members[0].weights, members[1].weights)  # the seed changes the training
    stacked = NgramEncoder.stack(members)
    assert (stacked.blocks, stacked.dim) == (3, 48)
    texts = [*ARTICLES, "我和老公想分开", "🙂"]
    for together in (stacked.encode(texts), np.stack([stacked.encode([t])[0] for t in texts])):
        mean = sum(m.encode(texts) @ m.encode(texts).T for m in members) / 3
        assert np.allclose(together @ together.T, mean, atol=1e-4)
        assert np.allclose(np.linalg.norm(together[:-1], axis=1), 1.0, atol=1e-5) and not together[-1].any()
    loaded = NgramEncoder.from_bytes(stacked.to_bytes())
    assert loaded.blocks == 3 and np.allclose(loaded.encode(texts), stacked.encode(texts))
    other = train_encoder(ARTICLES[:2], PAIRS[:6], dim=16, seed=0, epochs=1)  # another vocabulary
    with pytest.raises(ValueError, match="one vocabulary"):
        NgramEncoder.stack([members[0], other])


def test_vocabulary_counts_a_repeated_question_as_often_as_given():
    # 老公 occurs in no article and in one question: kept only when that question is given twice
    once = train_encoder(ARTICLES, [("老公不回家", [0]), ("偷东西", [3])], dim=8, epochs=1)
    twice = train_encoder(ARTICLES, [("老公不回家", [0])] * 2 + [("偷东西", [3])], dim=8, epochs=1)
    assert "老公" not in once.index and "老公" in twice.index


@pytest.mark.parametrize("side", ["residual", "separate"])
def test_a_query_side_learns_lay_words_and_round_trips(monkeypatch, side):
    monkeypatch.setattr(encoder_module, "QUERY_SIDE", side)
    encoder = train_encoder(ARTICLES, PAIRS * 20, dim=32, seed=0, epochs=30, max_steps=300)
    assert encoder.query_weights is not None and encoder.query_weights.shape == encoder.weights.shape
    docs = encoder.encode(ARTICLES)
    for question, (gold,) in PAIRS:
        assert int(np.argmax(docs @ encoder.encode([question], query=True)[0])) == gold, question
    # questions and articles read different tables: the same text gets two vectors
    assert not np.allclose(encoder.encode([ARTICLES[0]], query=True), encoder.encode([ARTICLES[0]]))
    loaded = NgramEncoder.from_bytes(encoder.to_bytes())
    texts = [q for q, _ in PAIRS]
    assert np.allclose(loaded.encode(texts, query=True), encoder.encode(texts, query=True))
    assert np.allclose(loaded.encode(texts, query=True),
                       np.stack([loaded.encode([t], query=True)[0] for t in texts]), atol=1e-5)


def test_an_unknown_query_side_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(encoder_module, "QUERY_SIDE", "both")
    with pytest.raises(ValueError, match="QUERY_SIDE"):
        train_encoder(ARTICLES, PAIRS, dim=8, epochs=1)


def test_hard_negatives_are_neighbours_of_the_same_group(monkeypatch):
    from lawtune.kb import encoder as encoder_module

    monkeypatch.setattr(encoder_module, "HARD_NEGATIVES", 1)
    groups = ["婚姻", "婚姻", "劳动", "劳动", "劳动", "刑法"]
    bags = encoder_module._bags_of(["甲乙"] * 6, {"甲": 0, "乙": 1}, np.ones(2, dtype=np.float32))
    import random

    picked = encoder_module._neighbours([0, 2, 5], {0, 2, 5}, groups, bags, random.Random(0))
    assert picked[:1] == [1] and picked[1] in (3, 4) and len(picked) == 2  # 刑法 has no neighbour
    first = train_encoder(ARTICLES, PAIRS, dim=16, seed=3, epochs=5, article_groups=["a", "a", "b", "b"])
    second = train_encoder(ARTICLES, PAIRS, dim=16, seed=3, epochs=5, article_groups=["a", "a", "b", "b"])
    assert np.array_equal(first.weights, second.weights)


def test_text_pairs_teach_lay_words_through_answers(monkeypatch):
    # 媳妇 / 醉驾 occur in no article and in no question → article pair, only in questions whose answers (text
    # targets, not articles) are written in the statute's words
    answers = [("媳妇闹着要跟我分手", "夫妻双方自愿离婚的，应当签订书面离婚协议。"),
               ("跟媳妇分手去哪里办", "夫妻应当亲自到婚姻登记机关申请离婚登记。"),
               ("醉驾被查了", "饮酒后驾驶机动车的，处暂扣六个月机动车驾驶证。"),
               ("醉驾怎么罚", "饮酒后驾驶机动车的，并处罚款。")]
    bags: list = []
    encoder = train_encoder(ARTICLES, PAIRS * 10, dim=32, seed=0, epochs=30, max_steps=300, article_bags=bags,
                            text_pairs=answers * 10)
    plain = train_encoder(ARTICLES, PAIRS * 10, dim=32, seed=0, epochs=30, max_steps=300)
    docs = encoder.encode(ARTICLES)
    for question, gold in [("媳妇", 0), ("醉驾", 2)]:
        cosines = docs @ encoder.encode([question], query=True)[0]
        assert cosines[gold] > max(np.delete(cosines, gold)) + 0.3, (question, cosines)
    assert not plain.encode(["媳妇"]).any()  # without the answers the word is unknown
    # the answers shape the vectors only: the articles' bags (and idf) are the articles' alone
    assert len(bags[0]) == len(ARTICLES) and np.allclose(encoder.encode_bags(bags[0]), docs, atol=1e-5)
    shared = [t for t in plain.vocab if t in encoder.index]
    assert len(shared) == len(plain.vocab)
    assert np.allclose(plain.idf[[plain.index[t] for t in shared]], encoder.idf[[encoder.index[t] for t in shared]])
    # a text target has no article neighbours: hard negatives skip it
    monkeypatch.setattr(encoder_module, "HARD_NEGATIVES", 1)
    train_encoder(ARTICLES, PAIRS, dim=8, epochs=2, article_groups=["a", "a", "b", "b"], text_pairs=answers)


def test_negatives_push_a_question_from_its_wrong_articles(monkeypatch):
    # 老板 is in the wage questions (article 1) and here in a drink-driving one (article 2): given article 1 as a
    # wrong article for it, that question moves away from article 1 (small batches: article 1 is often not a gold
    # of the batch, so it joins as the extra negative)
    monkeypatch.setattr(encoder_module, "BATCH", 2)
    pairs = [*PAIRS, ("老板喝酒开车", [2])]
    wrong = {"老板喝酒开车": [1]}
    plain = train_encoder(ARTICLES, pairs * 10, dim=16, seed=0, epochs=10, max_steps=60)
    pushed = train_encoder(ARTICLES, pairs * 10, dim=16, seed=0, epochs=10, max_steps=60, negatives=wrong)
    again = train_encoder(ARTICLES, pairs * 10, dim=16, seed=0, epochs=10, max_steps=60, negatives=wrong)
    assert np.array_equal(pushed.weights, again.weights)

    def cosine(encoder, article):
        return float(encoder.encode([ARTICLES[article]])[0] @ encoder.encode(["老板喝酒开车"], query=True)[0])

    assert cosine(pushed, 1) < cosine(plain, 1)


def test_build_reports_its_phases(tmp_path):
    from lawtune.kb.build import build
    from lawtune.kb.bundled import bundled_law_paths

    phases: dict[str, float] = {}
    build(bundled_law_paths()[:1], tmp_path / "kb.sqlite", phases=phases)
    assert list(phases) == ["indexing", "pairs", "training", "encoding", "storing", "finishing"]
    assert all(seconds >= 0 for seconds in phases.values())


def test_build_stores_a_dense_index_of_the_current_articles(kb):
    index = dense.load_dense(kb)
    assert index is not None
    assert index.encoder.blocks == encoder_module.ENSEMBLE  # the seeds' encoders, stacked
    current = kb.current_articles()
    assert len(index.keys) == len(current) == len(set(index.keys))
    norms = np.linalg.norm(index.vectors, axis=1)
    assert np.allclose(norms[norms > 0], 1.0, atol=1e-2)


def test_search_fuses_the_learned_retriever(kb, monkeypatch):
    # a real question of the shipped training pairs (so this checks the wiring, not generalisation): the article
    # its answer cites (divorce by lawsuit) shares almost no word with it; the text match alone ranks it far down.
    # Fused, it comes up from beyond 30 into the top 15 (rank 99 → 12 on SQLite, 42 → 8 on PostgreSQL since
    # STARD's 1,225 train questions share the 800 steps; it reached the top 5 before them).
    question = "2017年3月开始怀疑妻子移情别恋，到2018年元月找到証据。快一年时间因妻绝情小的6岁该怎么办？"
    gold = "《民法典》第一千零七十九条"

    monkeypatch.setattr(retrieval, "MEMORY_WEIGHT", 0.0)  # the vectors alone (the memory: the next tests)

    def rank(weight: float) -> int:
        monkeypatch.setattr(retrieval, "DENSE_WEIGHT", weight)
        cites = [h.item.cite() for h in Retriever(kb).search(question, k=50, kinds=("article",))]
        return cites.index(gold) + 1 if gold in cites else 99

    assert rank(1.0) <= 15 < 30 < rank(0.0)


def test_add_encodes_new_articles_at_once(writable_kb, monkeypatch):
    retriever = Retriever(writable_kb)
    before = dense.load_dense(writable_kb)
    text = "第一条 饲养宠物龙猫的，应当为其办理登记并接种疫苗。"
    writable_kb.add([Item(kind="article", text=text, law="龙猫饲养条例", law_full="龙猫饲养条例", article=1,
                          sub=0, version="2026-01-01", path="第一章 总则", source="test")])
    after = dense.load_dense(writable_kb)
    assert ("龙猫饲养条例", 1, 0) in after.row and len(after.keys) == len(before.keys) + 1
    row = after.vectors[after.row[("龙猫饲养条例", 1, 0)]]
    expected = after.encoder.encode([dense.article_text(writable_kb.lookup("龙猫饲养条例", 1))])[0]
    assert np.allclose(row, expected, atol=1e-2)
    # by its words and its vector alone (question memory off) the new article leads its question
    monkeypatch.setattr(retrieval, "MEMORY_WEIGHT", 0.0)
    assert retriever.search("养龙猫要登记吗", k=3, kinds=("article",))[0].item.law == "龙猫饲养条例"
    # with the memory (on by default) its nearest training questions (cosine ~0.6-0.7, on marriage registration:
    # 登记) vote 民法典 第一千零七十六条 / 第一千零七十八条 / 第一千零四十九条 above it on SQLite
    # (docs/knowledge-base.md, "The question memory": what it costs); it stays in the top 5
    monkeypatch.setattr(retrieval, "MEMORY_WEIGHT", 1.5)
    assert "龙猫饲养条例" in [h.item.law for h in retriever.search("养龙猫要登记吗", k=5, kinds=("article",))]


def test_a_newer_version_replaces_the_old_vector(writable_kb):
    old = dense.load_dense(writable_kb)
    key = ("中华人民共和国劳动合同法", 82, 0)
    assert key in old.row
    writable_kb.add([Item(kind="article", text="第八十二条 用人单位自用工之日起超过一个月不满一年未与劳动者订立书面劳动合同的，"
                          "应当向劳动者每月支付三倍的工资。", law="劳动合同法", law_full="中华人民共和国劳动合同法",
                          article=82, sub=0, version="2099-01-01", path="第七章 法律责任", source="test")])
    new = dense.load_dense(writable_kb)
    assert new.versions[new.row[key]] == "2099-01-01"
    assert ("中华人民共和国劳动合同法", 10, 0) not in new.row  # the new version has only article 82


def test_named_articles_still_lead(kb):
    retriever = Retriever(kb)
    kb._retriever = None
    hits = retriever.search("劳动合同法第八十二条", k=3)
    assert hits[0].exact and hits[0].item.article == 82


def test_memory_votes_for_the_articles_of_the_nearest_training_questions():
    encoder = train_encoder(ARTICLES, PAIRS * 20, dim=32, seed=0, epochs=30, max_steps=300)
    keys = [("法", n, 0) for n in range(len(ARTICLES))]
    questions = [q for q, _ in PAIRS]
    index = dense.DenseIndex(encoder, keys, [""] * len(keys), encoder.encode(ARTICLES), encoder.encode(questions),
                             [[keys[g] for g in golds] for _, golds in PAIRS])
    query = index.query_vector("老板不发工资")
    votes = index.votes(query, 3, 3.0)
    assert max(votes, key=votes.get) == keys[1]  # the three wage questions are its nearest
    one = index.votes(query, 1, 3.0)
    assert len(one) == 1 and 0 < next(iter(one.values())) <= 1.0
    assert index.votes(query, 3, 1.0)[keys[1]] > votes[keys[1]]  # cosines below 1: a higher power shrinks them
    assert index.votes(np.zeros(encoder.dim, np.float32), 3, 3.0) == {}
    loaded = dense.DenseIndex.from_bytes(index.to_bytes())
    assert loaded.memory_keys == index.memory_keys and np.allclose(loaded.memory, index.memory, atol=1e-2)
    bare = dense.DenseIndex(encoder, keys, [""] * len(keys), encoder.encode(ARTICLES))
    assert dense.DenseIndex.from_bytes(bare.to_bytes()).votes(query, 3, 3.0) == {}  # a KB without a memory


def test_build_keeps_a_memory_of_the_shipped_questions(kb):
    from lawtune.kb.names import LawNames
    from lawtune.kb.training_pairs import question_pairs

    index = dense.load_dense(kb)
    catalog = kb.catalog()
    asked = question_pairs(kb.current_articles(), LawNames([*catalog.versions, *catalog.repealed]))
    assert len(asked) > 1000 and len(index.memory) == len(index.memory_keys) == len(asked)
    assert all(key in index.row for keys in index.memory_keys for key in keys)  # articles of this KB only
    assert np.allclose(np.linalg.norm(index.memory, axis=1), 1.0, atol=1e-2)


def test_search_fuses_the_question_memory(kb, monkeypatch):
    # a shipped training question (the wiring, not generalisation): with the memory, its own cited article
    # comes up through the votes of the question itself
    question = "2017年3月开始怀疑妻子移情别恋，到2018年元月找到証据。快一年时间因妻绝情小的6岁该怎么办？"
    gold = "《民法典》第一千零七十九条"

    def rank(weight: float) -> int:
        monkeypatch.setattr(retrieval, "MEMORY_WEIGHT", weight)
        cites = [h.item.cite() for h in Retriever(kb).search(question, k=50, kinds=("article",))]
        return cites.index(gold) + 1 if gold in cites else 99

    assert rank(1.0) <= 3 < rank(0.0)


def test_add_keeps_the_memory(writable_kb):
    before = dense.load_dense(writable_kb)
    writable_kb.add([Item(kind="article", text="第一条 饲养宠物龙猫的，应当办理登记。", law="龙猫饲养条例",
                          law_full="龙猫饲养条例", article=1, sub=0, version="2026-01-01", path="", source="test")])
    after = dense.load_dense(writable_kb)
    assert after.memory_keys == before.memory_keys and np.array_equal(after.memory, before.memory)
