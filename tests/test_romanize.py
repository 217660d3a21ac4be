"""Romanised document names: English questions that name a zone by its place reach it."""

from __future__ import annotations

from rag.corpus.romanize import mentioned, place_part, romanised_names


def test_place_part_of_zone_regulations_only():
    assert place_part("宁波大榭开发区条例") == "宁波大榭"
    assert place_part("山东省经济开发区条例") == "山东"
    assert place_part("北京经济技术开发区条例") == "北京"
    assert place_part("中华人民共和国外商投资法") == ""
    assert place_part("城镇土地使用税暂行条例") == ""  # no zone word: not a place's regulation


def test_romanised_names_and_matching():
    assert romanised_names("宁波大榭开发区条例")[:3] == ("ningbo", "daxie", "ningbo daxie")
    assert romanised_names("河南省开发区条例") == ("henan",)
    assert mentioned("What does Shandong's development-zone regulation say?", romanised_names("山东省经济开发区条例"))
    assert mentioned("the Beijing ETDZ regulation", romanised_names("北京经济技术开发区条例"))
    assert not mentioned("Henanese food", romanised_names("河南省开发区条例"))  # a word, not a prefix
    assert not mentioned("a question about Shanghai", romanised_names("山东省经济开发区条例"))


def test_english_questions_reach_local_regulations_named_by_place(tmp_path_factory):
    """Documents a user adds (no hooks, no glossary entry) are reached by their place name."""
    import pytest

    from rag.index.ingest import ingest
    from rag.qa.assistant import Assistant
    from rag.settings import Settings
    from tests.conftest import make_tiny_corpus, shared_dir

    local = shared_dir() / "local-regulations"
    if not local.is_dir():
        pytest.skip("../shared/local-regulations is not present")
    root = tmp_path_factory.mktemp("local")
    settings = Settings(data_dir=root / "data", corpus_dir=make_tiny_corpus(root))
    ingest(settings, add_paths=[str(local)], progress=False)
    a = Assistant(settings)
    cases = {"What does the Ningbo Daxie regulation say about who administers the zone?": "宁波大榭开发区条例",
             "Under Shandong's development-zone regulation, who approves a new zone?": "山东省经济开发区条例",
             "Does the Henan regulation on development zones cover land use?": "河南省开发区条例"}
    for question, title in cases.items():
        result = a.ask(question)
        assert not result.abstained, (question, result.warnings)
        assert any(r.chunk.doc_title == title for r in result.retrieved[:5]), (question, [r.chunk.label for r in result.retrieved])
