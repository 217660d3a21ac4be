"""Shipped vectors: the file format, ingest taking them first, and the bundled corpus covered."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import replace

import numpy as np
import pytest

from rag.corpus import hooks
from rag.corpus.chunk import embedding_text
from rag.index import vectors
from rag.index.embed import get_embedder
from rag.index.ingest import (
    build_chunks,
    export_bundled_vectors,
    gather_documents,
    ingest,
    match_hooks,
)
from rag.settings import Settings


def test_file_names_are_safe_and_distinct():
    names = {vectors.file_name(g) for g in ("外商投资法@2019-03-15", "外商投资法_2019-03-15", "../etc/x", "..")}
    assert len(names) == 4
    assert all("/" not in n and not n.startswith(".") and n.endswith(".npz") for n in names)
    assert vectors.file_name("外商投资法@2019-03-15").startswith("外商投资法_2019-03-15-")


def test_export_then_lookup_round_trip(tmp_path):
    emb = get_embedder("hash")
    groups = {"外商投资法@2019-03-15": ["第一条 甲", "第二条 乙"], "notice": ["（十三）标准地", "第一条 甲"]}
    texts = {t for ts in groups.values() for t in ts}
    vecs = dict(zip(texts, emb.embed_documents(list(texts)), strict=True))
    summary = vectors.export(groups, "hash", tmp_path, vecs)
    assert sorted(summary.written) == sorted(groups) and summary.vectors == 4
    path = vectors.embedder_dir(tmp_path, "hash") / vectors.file_name("外商投资法@2019-03-15")
    with np.load(path) as data:
        header = json.loads(str(data["header"]))
        assert data["vectors"].dtype == np.int8 and data["scales"].dtype == np.float32
    assert header["group"] == "外商投资法@2019-03-15" and header["dim"] == 256
    found = vectors.lookup(["第二条 乙", "（十三）标准地", "not shipped"], "hash", tmp_path)
    assert set(found) == {"第二条 乙", "（十三）标准地"}
    assert np.allclose(found["第二条 乙"], vecs["第二条 乙"], atol=1e-3)

    # Unchanged content is not rewritten; prune drops groups no longer given.
    before = path.stat().st_mtime_ns
    again = vectors.export({"外商投资法@2019-03-15": groups["外商投资法@2019-03-15"]}, "hash", tmp_path, vecs,
                           prune=True)
    assert again.written == [] and again.unchanged == 1 and len(again.removed) == 1
    assert path.stat().st_mtime_ns == before


def test_header_mismatch_means_not_used(tmp_path, caplog, monkeypatch):
    vecs = {"第一条 甲": get_embedder("hash").embed_query("第一条 甲")}
    vectors.export({"doc": ["第一条 甲"]}, "hash", tmp_path, vecs)
    assert vectors.lookup(["第一条 甲"], "hash", tmp_path)
    monkeypatch.setattr(vectors, "NORMALIZER_VERSION", "some later normaliser")
    with caplog.at_level(logging.WARNING, logger="rag.index.vectors"):
        assert vectors.lookup(["第一条 甲"], "hash", tmp_path) == {}
    assert "normalizer" in caplog.text and "rag vectors export" in caplog.text


def test_other_embedders_ship_nothing(tmp_path):
    assert vectors.embedder_version("st:some-model") is None
    assert vectors.lookup(["第一条 甲"], "st:some-model", tmp_path) == {}
    with pytest.raises(ValueError):
        vectors.export({"doc": ["x"]}, "st:some-model", tmp_path, {"x": [1.0]})


def test_ingest_takes_shipped_vectors_before_embedding(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "documents").mkdir(parents=True)
    (corpus / "documents" / "园区管理办法(2024-01-02).md").write_text(
        "# 某园区管理办法\n\n第一条 为规范园区管理，制定本办法。\n\n第二条 园区企业应当遵守本办法。\n\n"
        "第三条 本办法自发布之日起施行。\n", encoding="utf-8")
    (corpus / "laws.yaml").write_text("laws: []\n", encoding="utf-8")
    s = Settings(data_dir=tmp_path / "export-data", cache_dir=tmp_path / "cache-a", corpus_dir=corpus,
                 embedder="hash", embed_workers=1)
    exported = export_bundled_vectors(s, progress=False)
    assert exported.vectors >= 3 and len(exported.written) == 1
    fresh = replace(s, data_dir=tmp_path / "data", cache_dir=tmp_path / "cache-b")
    first = ingest(fresh, progress=False)
    assert first.changed and first.embedded == 0 and first.reused == first.chunks
    # Without the shipped files the same corpus is embedded (and cached).
    for path in (corpus / "vectors").rglob("*.npz"):
        path.unlink()
    again = ingest(replace(fresh, data_dir=tmp_path / "data2"), progress=False)
    assert again.embedded == again.chunks


# --------------------------------------------------------------------------- the bundled corpus


@pytest.fixture(scope="module")
def bundled_chunks():
    docs, _, _ = gather_documents(Settings(), [])
    chunks, _, _ = build_chunks(docs, Settings().token_cap)
    return chunks


@pytest.fixture(scope="module")
def bundled_texts(bundled_chunks) -> list[str]:
    return list(dict.fromkeys(embedding_text(c) for c in bundled_chunks))


@pytest.fixture(scope="module")
def bundled_hook_keys(bundled_chunks) -> list[str]:
    rows = hooks.hook_rows(match_hooks(Settings(), bundled_chunks))
    return list(dict.fromkeys(hooks.vector_key(r.kind, r.text) for r in rows))


@pytest.mark.parametrize("what", ["chunks", "question hooks"])
def test_every_bundled_text_has_a_shipped_vector(what, bundled_texts, bundled_hook_keys):
    s = Settings()
    texts = bundled_texts if what == "chunks" else bundled_hook_keys
    found = vectors.lookup(texts, s.embedder, s.vectors_dir)
    missing = [t for t in texts if t not in found]
    assert not missing, (
        f"{len(missing)} of {len(texts)} bundled {what} have no shipped vector "
        f"(first: {missing[0][:60]!r}): run `make vectors` (rag vectors export) and commit corpus/vectors/")


def test_shipped_hook_vectors_equal_a_fresh_query_embedding(bundled_hook_keys):
    s = Settings()
    sample = [k for k in random.Random(7).sample(bundled_hook_keys, 60) if k.startswith(hooks.QUERY_KEY_PREFIX)][:10]
    found = vectors.lookup(sample, s.embedder, s.vectors_dir)
    assert len(found) == len(sample), "shipped vectors are missing: run `make vectors`"
    emb = get_embedder(s.embedder)
    for key in sample:
        a, b = np.asarray(found[key]), np.asarray(emb.embed_query(key[len(hooks.QUERY_KEY_PREFIX):]))
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cosine >= 0.995, f"shipped hook vector of {key[:40]!r} differs (cosine {cosine:.4f})"


def test_shipped_vectors_equal_a_fresh_embedding(bundled_texts):
    s = Settings()
    sample = random.Random(12).sample(bundled_texts, 20)
    found = vectors.lookup(sample, s.embedder, s.vectors_dir)
    assert len(found) == 20, "shipped vectors are missing: run `make vectors`"
    fresh = get_embedder(s.embedder).embed_documents(sample)
    for text, vec in zip(sample, fresh, strict=True):
        a, b = np.asarray(found[text]), np.asarray(vec)
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cosine >= 0.995, f"shipped vector of {text[:40]!r} differs (cosine {cosine:.4f})"


def test_shipped_vectors_stay_within_the_repository_budget():
    total = sum(p.stat().st_size for p in Settings().vectors_dir.rglob("*") if p.is_file())
    assert total <= 25_000_000, f"corpus/vectors is {total / 1e6:.1f} MB, over the 25 MB budget"
