"""The law version in force on a date (RAG_AS_OF), with the adopted-but-not-yet-effective
text indexed beside it. Real laws.db; small real indexes with the `hash` embedder."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest

from rag.corpus.laws import LawEntry, resolve, versions_as_of
from rag.errors import ConfigError
from rag.index.ingest import ingest
from rag.models import IN_FORCE, NOT_YET_IN_FORCE
from rag.qa.assistant import Assistant
from rag.settings import REPO_ROOT, Settings, from_env

TRADEMARK = LawEntry("中华人民共和国商标法")
FOREIGN_TRADE = LawEntry("中华人民共和国对外贸易法")


def versions(entry: LawEntry, as_of: str) -> list[tuple[str, str, str]]:
    return [(row["status"], row["version_date"], row["effective_date"]) for _, row in resolve([entry], as_of=as_of)]


def test_trademark_law_today_is_the_2019_text_with_the_2026_text_beside():
    # laws.db marks the 2026-06-26 version 现行有效, but it takes effect on 2027-01-01.
    assert versions(TRADEMARK, "2026-11-28") == [(IN_FORCE, "2019-04-23", "1983-03-01"),
                                                 (NOT_YET_IN_FORCE, "2026-06-26", "2027-01-01")]
    assert versions(TRADEMARK, "2027-01-01") == [(IN_FORCE, "2026-06-26", "2027-01-01")]


def test_foreign_trade_law_before_and_after_2026_03_01():
    assert versions(FOREIGN_TRADE, "2026-02-28") == [(IN_FORCE, "2022-12-30", "2004-07-01"),
                                                     (NOT_YET_IN_FORCE, "2025-12-27", "2026-03-01")]
    assert versions(FOREIGN_TRADE, "2026-03-01") == [(IN_FORCE, "2025-12-27", "2026-03-01")]
    # Before the 2025 text was adopted it is not indexed at all.
    assert versions(FOREIGN_TRADE, "2025-06-01") == [(IN_FORCE, "2022-12-30", "2004-07-01")]
    # Without a date: the database's 现行有效 version, as before.
    assert [row["version_date"] for _, row in resolve([FOREIGN_TRADE])] == ["2025-12-27"]


def test_a_law_not_yet_in_force_at_all_keeps_its_current_version():
    rows = [{"status": IN_FORCE, "version_date": "2019-03-15", "effective_date": "2020-01-01"}]
    assert versions_as_of(rows, "2019-06-01") == rows


def test_as_of_setting_defaults_to_today_and_rejects_bad_dates():
    assert from_env({}).as_of_date == dt.date.today().isoformat()
    assert from_env({"RAG_AS_OF": "2026-01-15"}).as_of_date == "2026-01-15"
    with pytest.raises(ConfigError, match="RAG_AS_OF"):
        from_env({"RAG_AS_OF": "15.01.2026"})


def _index(tmp_path, laws: str, as_of: str) -> Assistant:
    corpus = tmp_path / "corpus"
    (corpus / "documents").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "corpus" / "documents" / "notice-2025-05-21.md", corpus / "documents")
    (corpus / "laws.yaml").write_text(f"laws:\n  - {laws}\n", encoding="utf-8")
    settings = Settings(data_dir=tmp_path / "data", corpus_dir=corpus, embedder="hash", as_of=as_of,
                        cache_dir=tmp_path / "cache")
    ingest(settings, progress=False)
    return Assistant(settings)


def test_answers_cite_the_trademark_law_in_force_and_show_the_coming_text(tmp_path):
    a = _index(tmp_path, "中华人民共和国商标法", "2026-11-28")
    docs = {d.doc_id: d for d in a.documents()}
    assert docs["商标法"].status == IN_FORCE and docs["商标法"].date == "2019-04-23"
    coming = docs["商标法@2026-06-26"]
    assert coming.status == NOT_YET_IN_FORCE and coming.effective_date == "2027-01-01"
    assert coming.short_title == "商标法（2026-06-26）"
    r = a.ask("商标法第十条")
    c = r.citations[0]
    assert (c.label, c.status, c.date) == ("《商标法》第十条", IN_FORCE, "2019-04-23")
    assert c.other_version == {"label": "《商标法（2026-06-26）》第十条", "status": NOT_YET_IN_FORCE,
                               "effective_date": "2027-01-01", "date": "2026-06-26"}
    assert r.to_dict()["citations"][0]["other_version"]["effective_date"] == "2027-01-01"
    assert "2027-01-01起施行：《商标法（2026-06-26）》第十条" in r.answer
    assert not r.warnings  # the cited version is in force: nothing to warn about
    # Searching: only the version in force (the coming text is not 现行有效).
    hits = a.search("商标注册申请", k=10)
    assert hits and all(h.chunk.doc_id == "商标法" for h in hits if h.chunk.short_title.startswith("商标法"))
    assert a.health().as_of == "2026-11-28"


def test_foreign_trade_law_as_of_before_2026_03_01(tmp_path):
    a = _index(tmp_path, "中华人民共和国对外贸易法", "2026-01-15")
    r = a.ask("Article 1 of the Foreign Trade Law")
    c = r.citations[0]
    assert (c.label, c.date, c.status) == ("《对外贸易法》第一条", "2022-12-30", IN_FORCE)
    assert c.other_version is not None and c.other_version["effective_date"] == "2026-03-01"
    assert "takes effect 2026-03-01" in r.answer


def test_extractive_and_llm_answers_are_finished_alike(tmp_path):
    """One finishing step for both modes: the same see-also / other-version lines, status
    notes as of RAG_AS_OF, and rounded timings. The model is scripted (a remote LLM cannot
    run here); its one sentence passes the checks, so the llm answer is its own."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    a = _index(tmp_path, "中华人民共和国商标法", "2026-11-28")
    for question in ("商标法第十条", "《商标法（2026-06-26）》第十条"):
        a.chat_model = FakeListChatModel(responses=["该条列出了不得作为商标使用的标志。[1]"])
        extractive = a.ask(question, mode="extractive")
        llm = a.ask(question, mode="llm")
        assert not any("extractive answer" in w for w in llm.warnings), llm.warnings
        assert not llm.answer.startswith("根据语料库中的条款")  # the model's own sentence
        assert [(c.label, c.see_also, c.other_version, c.effective_date) for c in llm.citations] == \
               [(c.label, c.see_also, c.other_version, c.effective_date) for c in extractive.citations[:1]]
        status = [w for w in extractive.warnings if w.startswith("[")]
        assert [w for w in llm.warnings if w.startswith("[")] == status
        tail = extractive.answer.split("来源：")[1].split("\n", 2)[-1]  # link lines and notes
        assert llm.answer.endswith(tail), (llm.answer, tail)
        for result in (extractive, llm):
            assert set(result.timings_ms) == {"prepare", "retrieve", "total"}
            assert all(round(v, 2) == v for v in result.timings_ms.values())
    # The coming text is cited in both modes with its status, as of the setting's date.
    assert status == ["[1] 《商标法（2026-06-26）》第十条尚未生效（自2027-01-01起施行），仅供参考。"]
    assert "2027-01-01起施行：《商标法（2026-06-26）》第十条" in a.ask("商标法第十条", mode="llm").answer
