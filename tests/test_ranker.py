"""The learned ranking stage: features, scoring and training as pure functions with
hand-checked answers, and the shipped model in a real search."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rag.qa.features import FEATURE_NAMES, MISSING_Z, CandidateSignals, QueryFacts, feature_matrix
from rag.qa.ranker import LinearRanker, load_ranker, ranker_from_json, softmax


def _cand(**kw) -> CandidateSignals:
    base = dict(bm25=None, bm25_z=None, dense=None, dense_z=None, hook_bm25=None, hook_bm25_z=None,
                hook_dense=None, hook_dense_z=None, has_hooks=False, bm25_rank=None, dense_rank=None,
                fused_rank=1, doc_named=False, coverage=0.0, hook_coverage=0.0, kind="article",
                doc_type="法律", in_force=True, tokens=99)
    return CandidateSignals(**(base | kw))


def test_features_of_two_candidates_by_hand():
    a = _cand(bm25=8.0, bm25_z=3.0, dense=0.9, dense_z=2.0, bm25_rank=1, dense_rank=2, fused_rank=1,
              doc_named=True, coverage=0.5)
    b = _cand(bm25=4.0, bm25_z=1.0, dense_rank=None, fused_rank=2, kind="measure", doc_type="政策文件",
              hook_dense=0.8, hook_dense_z=1.5, has_hooks=True)
    x = feature_matrix([a, b], QueryFacts(english=True, length=30))
    col = {name: x[:, i].tolist() for i, name in enumerate(FEATURE_NAMES)}
    assert col["bm25_rel"] == [1.0, 0.5]
    assert col["dense_gap"] == [0.0, -0.2]  # b has no dense score: a fixed gap below the best
    assert col["dense_z"] == [2.0, MISSING_Z] and col["hook_dense_z"] == [2.0, 1.5]
    # a has no hooks: its hook features say what its own do (neither reward nor penalty)
    assert col["hook_bm25_z"][0] == 3.0 and col["hook_coverage"][0] == 0.5 and col["has_hooks"] == [0.0, 1.0]
    assert col["rrf_bm25"] == [1.0, 0.0] and col["rrf_dense"] == [pytest.approx(61 / 62), 0.0]
    assert col["fused_rank_log"] == [0.0, pytest.approx(math.log(2))] and col["first_fused"] == [1.0, 0.0]
    assert col["kind_article"] == [1.0, 0.0] and col["kind_measure"] == [0.0, 1.0]
    assert col["type_law"] == [1.0, 0.0] and col["type_notice"] == [0.0, 1.0]
    assert col["en_x_dense_z"] == [2.0, MISSING_Z] and col["lang_en"] == [1.0, 1.0]
    assert col["doc_named"] == [1.0, 0.0] and col["clause_len_log"] == [math.log(100)] * 2


def test_a_linear_ranker_scores_standardised_features_and_round_trips():
    d = len(FEATURE_NAMES)
    weights = np.zeros(d)
    weights[FEATURE_NAMES.index("coverage")] = 2.0
    r = LinearRanker(FEATURE_NAMES, np.full(d, 0.5), np.full(d, 0.25), weights)
    x = np.zeros((2, d))
    x[:, FEATURE_NAMES.index("coverage")] = [0.75, 0.25]
    assert r.score(x).tolist() == [2.0, -2.0]  # (0.75 − 0.5) / 0.25 × 2, (0.25 − 0.5) / 0.25 × 2
    again = ranker_from_json(r.to_json())
    assert np.array_equal(again.score(x), r.score(x))
    assert softmax(np.array([0.0, math.log(3)])).tolist() == pytest.approx([0.25, 0.75])


def test_a_model_of_other_features_is_refused():
    with pytest.raises(ValueError, match="make ranker"):
        ranker_from_json('{"features": ["bm25_z"], "mean": [0], "scale": [1], "weights": [1]}')


def test_training_finds_the_signal_that_marks_the_gold_candidate():
    from rag.bench.evaluate import EvalItem
    from rag.bench.train_ranker import Query, fit, hit_at_1

    rng = np.random.default_rng(0)
    d, cov = len(FEATURE_NAMES), FEATURE_NAMES.index("coverage")
    queries = []
    for i in range(40):
        x = rng.normal(size=(5, d))
        gold = np.zeros(5, dtype=bool)
        gold[i % 5] = True
        x[:, cov] = 0.0
        x[i % 5, cov] = 1.0  # only coverage tells the gold candidate, and it is never first
        item = EvalItem(str(i), "q", "zh", True, ("e",), (), "c")
        queries.append(Query(item, x, gold))
    model = fit(queries, lam=1.0)
    assert hit_at_1(None, queries) == pytest.approx(0.2)  # the candidates' own order
    assert hit_at_1(model, queries) == 1.0
    assert int(np.argmax(np.abs(model.weights))) == cov and model.weights[cov] > 0


def test_leaving_a_set_out_shows_a_signal_only_that_set_carries():
    from rag.bench.evaluate import EvalItem
    from rag.bench.train_ranker import Query, cross_validated, left_out_by_set

    rng = np.random.default_rng(1)
    d = len(FEATURE_NAMES)
    marks = {"a.jsonl": FEATURE_NAMES.index("coverage"), "b.jsonl": FEATURE_NAMES.index("clause_len_log")}
    queries = []
    for file, col in marks.items():  # each writer's questions are told apart by another signal
        for i in range(40):
            x = rng.normal(size=(5, d))
            gold = np.zeros(5, dtype=bool)
            gold[i % 5] = True
            x[:, col] = 0.0
            x[i % 5, col] = 3.0
            queries.append(Query(EvalItem(f"{file}{i}", "q", "zh", True, ("e",), (), "c", file=file), x, gold))
    mixed = np.mean([hit for _, hit in cross_validated(queries, 1.0)])
    left_out = np.mean([hit for _, hit in left_out_by_set(queries, 1.0)])
    assert mixed > 0.8  # random folds train on both writers
    assert left_out < 0.5  # a model that never saw a writer's signal is near chance (0.2) on them


def test_the_shipped_model_matches_the_features_and_its_embedder():
    model = load_ranker("e5-small")
    assert model is not None and model.names == FEATURE_NAMES
    assert load_ranker("hash") is None  # another embedder's scores: fusion alone


def test_the_learned_stage_reorders_only_the_pool_and_keeps_a_named_clause_first(tiny_settings):
    from rag.models import Retriever
    from rag.qa.assistant import Assistant
    from rag.qa.search import DEFAULT_RETRIEVERS

    a = Assistant(tiny_settings)
    fused_only = tuple(r for r in DEFAULT_RETRIEVERS if r != Retriever.LEARNED)
    for q in ("M0用地能建住宅吗？", "Can foreign investors remit profits?"):
        learned = a.search(q, k=30)
        fused = a.search(q, k=30, retrievers=fused_only)
        assert {r.chunk.label for r in learned} == {r.chunk.label for r in fused}  # the same candidates
    named = a.search("外商投资法第二十一条 利润汇出", k=5)
    assert named[0].exact and named[0].chunk.label == "《外商投资法》第二十一条"
