"""Ingestion against a real Chroma and the real e5-small embedder on a tiny corpus."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from rag.corpus.laws import LawEntry, load_laws, resolve
from rag.corpus.normalize import NORMALIZER_VERSION
from rag.errors import CorpusError, IndexMismatchError, IndexNotFoundError
from rag.index import store
from rag.index.ingest import ingest
from rag.qa.assistant import Assistant
from rag.settings import Settings
from tests.conftest import make_tiny_corpus


def test_unknown_law_names_closest_matches(tmp_path):
    with pytest.raises(CorpusError) as err:
        resolve([LawEntry("中华人民共和国外商投资")])
    assert "外商投资法" in err.value.hint


def test_repealed_law_listed_on_purpose_carries_its_status():
    (doc,) = load_laws([LawEntry("中华人民共和国环境保护法", status="已废止")])
    assert doc.status == "已废止" and doc.doc_id.startswith("环境保护法@")
    with pytest.raises(CorpusError, match="no version with status"):
        resolve([LawEntry("中华人民共和国环境保护法")])


def test_tiny_index_counts_and_labels(tiny_settings):
    a = Assistant(tiny_settings)
    docs = {d.doc_id: d for d in a.documents()}
    assert set(docs) == {"etdz-work-plan-2025", "外商投资法", "土地管理法"}
    notice = docs["etdz-work-plan-2025"]
    assert notice.short_title == "工作方案" and notice.issuer == "商务部" and notice.date == "2025-05-21"
    measures = [c for c in a.clauses(notice.doc_id) if c.kind == "measure"]
    assert len(measures) == 16 and notice.measure_count == 16 and notice.part_count == 5
    (m13,) = a.find("《工作方案》（十三）")
    assert "标准地" in m13.text and m13.section_path.startswith("五、强化要素保障")
    (art,) = a.find("外商投资法第二十一条")
    assert art.label == "《外商投资法》第二十一条" and "汇出" in art.text
    assert docs["外商投资法"].clause_count == 42


def test_indexed_notice_is_clean(tiny_settings):
    a = Assistant(tiny_settings)
    text = "".join(c.text for c in a.clauses("etdz-work-plan-2025"))
    assert "向专业化" in text and "对外合作。支持国家级经开区" in text
    assert "?" not in text and "(" not in text and "jīng" not in text


def _copy_index(src: Settings, tmp_path) -> Settings:
    data = tmp_path / "data"
    shutil.copytree(src.data_dir, data)
    corpus = tmp_path / "corpus"
    shutil.copytree(src.corpus_dir, corpus)
    # An empty embedding cache of its own: the per-user one remembers texts from earlier runs.
    return replace(src, data_dir=data, corpus_dir=corpus, cache_dir=tmp_path / "cache")


def test_incremental_reingest(tiny_settings, tmp_path):
    s = _copy_index(tiny_settings, tmp_path)
    again = ingest(s, progress=False)
    assert not again.changed and again.embedded == 0

    # A changed document replaces exactly its chunks; an added one is embedded; the rest reused.
    notice = s.documents_dir / "notice-2025-05-21.md"
    notice.write_text(notice.read_text(encoding="utf-8").replace("标准地", "标准化用地"), encoding="utf-8")
    extra = tmp_path / "user"
    extra.mkdir()
    (extra / "园区管理办法(2024-01-02).md").write_text(
        "# 某园区管理办法\n\n第一条 为规范园区管理，制定本办法。\n\n第二条 园区企业应当遵守本办法。\n\n"
        "第三条 本办法自发布之日起施行。\n", encoding="utf-8")
    changed = ingest(s, add_paths=[str(extra)], progress=False)
    assert changed.changed and changed.updated == ["etdz-work-plan-2025"]
    assert changed.added == ["某园区管理办法@2024-01-02"]
    assert 0 < changed.embedded <= 6  # measure 13's chunk(s) and three articles
    a = Assistant(s)
    assert "标准化用地" in a.find("《工作方案》（十三）")[0].text
    assert a.find("《某园区管理办法》第二条")

    # Removing the file removes its document.
    shutil.rmtree(extra)
    removed = ingest(s, progress=False)
    assert removed.removed == ["某园区管理办法@2024-01-02"] and removed.embedded == 0


def test_killed_ingest_leaves_index_usable_and_is_cleaned(tiny_settings, tmp_path):
    s = _copy_index(tiny_settings, tmp_path)
    client = store.make_client(s.data_dir)
    before = store.active_info(client)
    # What a kill between writing and switching leaves behind: a half-written build.
    client.create_collection("chunks_19990101000000_dead00")
    assert Assistant(s).find("外商投资法第二十一条")
    ingest(s, rebuild=True, progress=False)
    names = {c if isinstance(c, str) else c.name for c in client.list_collections()}
    assert "chunks_19990101000000_dead00" not in names
    assert store.active_info(client).build != before.build


def test_other_embedder_is_a_clear_error(tiny_settings):
    client = store.make_client(tiny_settings.data_dir)
    with pytest.raises(IndexMismatchError, match="rebuild"):
        store.require_index(client, "hash", NORMALIZER_VERSION)
    with pytest.raises(IndexMismatchError):
        store.require_index(client, "e5-small", "0")


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(IndexNotFoundError, match="no index"):
        Assistant(Settings(data_dir=tmp_path / "empty", corpus_dir=make_tiny_corpus(tmp_path)))


def test_bad_files_skipped_rest_ingested(tiny_settings, tmp_path):
    s = _copy_index(tiny_settings, tmp_path)
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    (folder / "table.xlsx").write_bytes(b"PK\x03\x04")
    (folder / "通知(2025-01-01).txt").write_text("关于园区的通知\n一、园区企业应当按时报送统计数据。\n",
                                               encoding="gb18030")
    summary = ingest(s, add_paths=[str(folder)], progress=False)
    skipped = {p.split("/")[-1]: r for p, r in ((x.path, x.reason) for x in summary.skipped)}
    assert set(skipped) == {"broken.pdf", "table.xlsx"} and all(skipped.values())
    assert "关于园区的通知@2025-01-01" in summary.added
