"""The law stage: a classifier over laws on the encoder's question vector, stored with the dense index, and the
search's lift of the predicted laws' articles."""

from __future__ import annotations

import numpy as np

from lawtune.kb import dense
from lawtune.kb.encoder import train_encoder
from lawtune.kb.lawstage import LawModel, train_law_model

# two laws, two articles each; lay questions whose words the articles do not share
ARTICLES = [
    "夫妻双方自愿离婚的，应当签订书面离婚协议。",
    "离婚时，夫妻的共同财产由双方协议处理。",
    "盗窃公私财物，数额较大的，处三年以下有期徒刑。",
    "以暴力、胁迫方法抢劫公私财物的，处三年以上十年以下有期徒刑。",
]
LAWS = ["中华人民共和国民法典", "中华人民共和国民法典", "中华人民共和国刑法", "中华人民共和国刑法"]
PAIRS = [
    ("我和老公过不下去了想分开", [0]), ("老公和我分开房子归谁", [1]), ("跟老公分开存款怎么分", [1]),
    ("偷了别人手机会坐牢吗", [2]), ("朋友在街上抢了人的包", [3]), ("偷东西被抓了判几年", [2]),
]


def _trained():
    encoder = train_encoder(ARTICLES, PAIRS * 20, dim=16, seed=0, epochs=20, max_steps=200)
    return encoder, train_law_model(encoder, PAIRS * 10, LAWS)


def test_the_law_model_learns_which_law_a_lay_question_is_about():
    encoder, model = _trained()
    assert model.laws == ["中华人民共和国刑法", "中华人民共和国民法典"]
    for question, (gold,) in PAIRS:
        p = model.probabilities(encoder.encode([question])[0])
        assert abs(sum(p.values()) - 1.0) < 1e-5
        assert max(p, key=p.get) == LAWS[gold], (question, p)


def test_training_is_deterministic():
    encoder, first = _trained()
    second = train_law_model(encoder, PAIRS * 10, LAWS)
    assert np.array_equal(first.weight, second.weight) and np.array_equal(first.bias, second.bias)


def test_the_dense_blob_keeps_the_law_model_and_reads_one_without_it():
    encoder, model = _trained()
    keys = [(law, n, 0) for n, law in enumerate(LAWS)]
    index = dense.DenseIndex(encoder, keys, [""] * 4, encoder.encode(ARTICLES), law_model=model)
    loaded = dense.DenseIndex.from_bytes(index.to_bytes())
    vector = encoder.encode(["老公要跟我分开"])[0]
    assert loaded.law_model.laws == model.laws
    got, want = loaded.law_model.probabilities(vector), model.probabilities(vector)
    assert all(abs(got[law] - want[law]) < 1e-2 for law in want)  # stored as float16
    older = dense.DenseIndex.from_bytes(dense.DenseIndex(encoder, keys, [""] * 4, encoder.encode(ARTICLES)).to_bytes())
    assert older.law_model is None


def test_no_pairs_gives_a_model_that_lifts_nothing():
    encoder, _ = _trained()
    empty = train_law_model(encoder, [], LAWS)
    p = empty.probabilities(encoder.encode(["偷东西"])[0])
    assert abs(p["中华人民共和国刑法"] - p["中华人民共和国民法典"]) < 1e-6
    assert LawModel([], np.zeros((16, 0)), np.zeros(0)).probabilities(np.ones(16)) == {}


def test_search_lifts_the_articles_of_the_predicted_law(kb, monkeypatch):
    from lawtune.kb import retrieval
    from lawtune.kb.retrieval import Retriever

    question = "单位不给发工资还要赔偿吗"
    retriever = Retriever(kb)
    before = [h.item.law for h in retriever.search(question, k=10, kinds=("article",))]
    assert any(law != "刑法" for law in before)
    index = retriever.dense
    laws = sorted({key[0] for key in index.keys})
    bias = np.array([8.0 if law == "中华人民共和国刑法" else 0.0 for law in laws], np.float32)  # P(刑法) ≈ 1
    index.law_model = LawModel(laws, np.zeros((index.encoder.dim, len(laws)), np.float32), bias)
    monkeypatch.setattr(retrieval, "LAW_WEIGHT", 0.0)
    assert [h.item.law for h in retriever.search(question, k=10, kinds=("article",))] == before  # off: no change
    monkeypatch.setattr(retrieval, "LAW_WEIGHT", 3.0)
    after = [h.item.law for h in retriever.search(question, k=10, kinds=("article",))]
    assert after.count("刑法") > before.count("刑法")
