"""Documents a user adds: the five local development-zone regulations in
../shared/local-regulations (never part of the bundled corpus)."""

from __future__ import annotations

from rag.index.ingest import ingest
from rag.qa.assistant import Assistant
from rag.settings import REPO_ROOT, Settings
from tests.conftest import make_tiny_corpus

LOCAL = {"北京经济技术开发区条例", "上海市经济技术开发区条例", "山东省经济开发区条例", "河南省开发区条例",
         "宁波大榭开发区条例"}


def test_local_regulations_are_not_bundled():
    bundled = " ".join(p.name for p in (REPO_ROOT / "corpus").rglob("*"))
    assert not any(title in bundled for title in LOCAL)


def test_add_local_regulations_folder(local_regulations_dir, tmp_path):
    s = Settings(data_dir=tmp_path / "data", corpus_dir=make_tiny_corpus(tmp_path), embedder="hash",
                 cache_dir=tmp_path / "cache")
    ingest(s, progress=False)
    summary = ingest(s, add_paths=[str(local_regulations_dir)], progress=False)
    assert len(summary.added) == 5 and not summary.skipped
    assert not [w for w in summary.warnings if "suspicious" in w]
    a = Assistant(s)
    docs = {d.short_title: d for d in a.documents()}
    assert LOCAL <= set(docs)
    beijing, henan = docs["北京经济技术开发区条例"], docs["河南省开发区条例"]
    assert beijing.doc_type == "地方性法规" and beijing.date == "1995-04-14" and beijing.status == "现行有效"
    assert henan.date == "2010-07-30"
    articles = [c for c in a.clauses(henan.doc_id) if c.kind == "article"]
    assert [c.number for c in articles] == list(range(1, 52))
    (art2,) = a.find("《北京经济技术开发区条例》第二条")
    assert "经国务院批准设立的北京经济技术开发区" in art2.text
    r = a.ask("山东省经济开发区条例第二条")
    assert r.citations[0].label == "《山东省经济开发区条例》第二条"
    # A re-ingest with nothing changed keeps them (the folder is remembered).
    again = ingest(s, progress=False)
    assert not again.changed and again.documents == summary.documents
