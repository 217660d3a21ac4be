"""The 22 State Council regulations bundled in corpus/documents/regulations/.

Checked without an index: the bundled files are exactly what `python -m rag.corpus.regulations`
writes from the source folder, their articles parse with continuous numbering, and the
corruption detector reports nothing on them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rag.corpus import regulations
from rag.corpus.corruption import detect_corruption
from rag.corpus.loaders import load_file
from rag.corpus.parse import parse_document
from rag.index.ingest import document_from_file
from rag.settings import REPO_ROOT

CORPUS = REPO_ROOT / "corpus"
BUNDLED = CORPUS / "documents" / regulations.FOLDER
ENTRIES = regulations.load_manifest(CORPUS / regulations.MANIFEST)
SOURCE_ARTICLE = re.compile(r"^第[一二三四五六七八九十百千零〇\d]+条(?:之[一二三四五六七八九十]+)?[ \u3000]", re.M)


@pytest.fixture(scope="module")
def sources_dir() -> Path:
    from tests.conftest import shared_dir

    path = shared_dir() / "sources" / "regulations"
    if not path.is_dir():
        pytest.skip("../shared/sources/regulations is not present")
    return path


def test_manifest_and_files_agree() -> None:
    files = sorted(p.name for p in BUNDLED.glob("*.md"))
    assert sorted(e.file for e in ENTRIES) == files
    assert len(files) == 22
    for e in ENTRIES:
        assert e.english_title and e.source_repository and len(e.source_commit) == 40, e.file


def test_every_bundled_file_is_the_rebuild_of_its_source(sources_dir: Path) -> None:
    for e in ENTRIES:
        source = (sources_dir / e.file).read_text(encoding="utf-8")
        assert (BUNDLED / e.file).read_text(encoding="utf-8") == regulations.bundled_text(e, source), e.file


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.file for e in ENTRIES])
def test_articles_continuous_and_counted_like_the_source(entry, sources_dir: Path) -> None:
    loaded = load_file(BUNDLED / entry.file)
    doc, suspects = document_from_file(loaded, {})
    assert suspects == [], [str(s) for s in suspects]
    assert detect_corruption(doc.text, entry.file) == []
    assert doc.doc_type == "行政法规" and doc.issuer == "国务院" and doc.status == "现行有效"
    assert doc.english_title == entry.english_title and doc.date == regulations.date_from_name(entry.file)
    articles = [c for c in parse_document(doc.text) if c.kind == "article"]
    numbers = [c.number for c in articles if "之" not in c.key]
    assert numbers == list(range(1, len(numbers) + 1)), entry.file
    source = (sources_dir / entry.file).read_text(encoding="utf-8")
    assert len(articles) == len(SOURCE_ARTICLE.findall(source)), entry.file


def test_front_matter_of_the_income_tax_regulation() -> None:
    doc, _ = document_from_file(load_file(BUNDLED / "企业所得税法实施条例(2024-12-06).md"), {})
    assert doc.doc_id == doc.short_title == "企业所得税法实施条例"
    assert doc.title == "中华人民共和国企业所得税法实施条例"
    assert (doc.date, doc.effective_date) == ("2024-12-06", "2024-12-06")
    articles = {c.key: doc.text[c.start:c.end] for c in parse_document(doc.text)}
    assert "国家需要重点扶持的高新技术企业" in articles["第九十三条"]
    assert "小型微利企业" in articles["第九十二条"]


def test_effective_date_is_the_later_of_version_and_commencement() -> None:
    text = "第一条 …\n第二条 本条例自2020年1月1日起施行。"
    assert regulations.effective_date(text, "2019-12-26") == "2020-01-01"
    assert regulations.effective_date(text, "2021-07-02") == "2021-07-02"
    assert regulations.effective_date("第一条 无施行日期", "2019-03-02") == "2019-03-02"
