"""Clause references and links (rag.corpus.links), document aliases (rag.corpus.aliases) and
exact lookup of regulation articles in both languages (rag.corpus.references)."""

from __future__ import annotations

import pytest

from rag.corpus.aliases import (
    canonical_chinese,
    chinese_aliases,
    english_aliases,
    english_documents,
)
from rag.corpus.links import ClauseText, build_links, find_references
from rag.corpus.references import find_reference
from rag.settings import REPO_ROOT

KNOWN = {"企业所得税法", "企业所得税法实施条例", "外商投资法", "外商投资法实施条例", "专利法",
         "专利法实施细则", "土地管理法", "土地管理法实施条例", "工作方案", "招标投标法实施条例"}


def refs(text: str, own: str = "x") -> list[tuple[str, str]]:
    return [(r.short_title, r.clause_key) for r in find_references(text, own, KNOWN)]


@pytest.mark.parametrize(("text", "own", "expected"), [
    ("第九十三条 企业所得税法第二十八条第二款所称国家需要重点扶持的高新技术企业", "企业所得税法实施条例",
     [("企业所得税法", "第二十八条")]),
    ("第三条 外商投资法第二条第二款第一项、第三项所称其他投资者", "外商投资法实施条例", [("外商投资法", "第二条")]),
    ("依照外商投资法第三十六条的规定予以处理", "外商投资法实施条例", [("外商投资法", "第三十六条")]),
    ("不适用专利法第二十四条、第二十九条、第四十二条和本细则第三十九条", "专利法实施细则",
     [("专利法", "第二十四条"), ("专利法", "第二十九条"), ("专利法", "第四十二条"), ("专利法实施细则", "第三十九条")]),
    ("依照《中华人民共和国土地管理法》第四十五条规定", "x", [("土地管理法", "第四十五条")]),
    ("违反本法第十六条规定的", "企业所得税法", [("企业所得税法", "第十六条")]),
    ("本条例第93条", "企业所得税法实施条例", [("企业所得税法实施条例", "第九十三条")]),
    # The regulation, not the law it implements.
    ("依照外商投资法实施条例第三条", "x", [("外商投资法实施条例", "第三条")]),
    # Unknown documents and bare article numbers are no links.
    ("依照《中华人民共和国公司法》第五条", "x", []),
    ("第二十八条 符合条件的小型微利企业", "企业所得税法", []),
])
def test_references_in_clause_text(text, own, expected):
    assert refs(text, own) == expected


def test_links_both_directions_and_see_also_order():
    clauses = [
        ClauseText("企业所得税法", "第二十八条", "第二十八条 符合条件的小型微利企业，减按20%的税率征收企业所得税。"),
        ClauseText("企业所得税法", "第三十条", "第三十条 依照本法第二十八条…"),
        ClauseText("企业所得税法实施条例", "第九十二条", "第九十二条 企业所得税法第二十八条第一款所称符合条件的小型微利企业…"),
        ClauseText("企业所得税法实施条例", "第九十三条", "第九十三条 企业所得税法第二十八条第二款所称…"),
        ClauseText("企业所得税法实施条例", "第九十四条", "第九十四条 企业所得税法第九十九条所称…"),  # no such article
    ]
    graph = build_links(clauses)
    law = ("企业所得税法", "第二十八条")
    assert graph.see_also(law) == [("企业所得税法实施条例", "第九十二条"), ("企业所得税法实施条例", "第九十三条"),
                                   ("企业所得税法", "第三十条")]
    assert graph.see_also(("企业所得税法实施条例", "第九十三条")) == [law]
    assert graph.see_also(("企业所得税法实施条例", "第九十四条")) == []
    assert graph.see_also(law, limit=1) == [("企业所得税法实施条例", "第九十二条")]


def test_links_in_the_bundled_income_tax_regulation():
    from rag.corpus.loaders import load_file
    from rag.corpus.parse import parse_document
    from rag.index.ingest import document_from_file

    doc, _ = document_from_file(load_file(REPO_ROOT / "corpus" / "documents" / "regulations"
                                          / "企业所得税法实施条例(2024-12-06).md"), {})
    clauses = [ClauseText(doc.short_title, c.key, doc.text[c.start:c.end]) for c in parse_document(doc.text)]
    law = [ClauseText("企业所得税法", f"第{n}条", "") for n in ("二十八", "二十七", "一")]
    graph = build_links(clauses + law)
    assert graph.cited_by[("企业所得税法", "第二十八条")] == [("企业所得税法实施条例", "第九十二条"),
                                                        ("企业所得税法实施条例", "第九十三条")]
    assert ("企业所得税法", "第一条") in graph.cites[("企业所得税法实施条例", "第二条")]


def test_chinese_aliases():
    aliases = chinese_aliases()
    assert canonical_chinese("专利法实施条例第十二条", aliases, KNOWN) == "专利法实施细则第十二条"
    assert canonical_chinese("外资法第二十条", aliases, KNOWN) == "外商投资法第二十条"
    # An alias inside another name stays: 外资法实施条例 → the regulation, not the law.
    assert canonical_chinese("外资法实施条例第三条", aliases, KNOWN) == "外商投资法实施条例第三条"
    assert canonical_chinese("招投标法实施条例", aliases, KNOWN) == "招标投标法实施条例"
    assert canonical_chinese("外资法律保护哪些权益", aliases, KNOWN) == "外资法律保护哪些权益"


ENGLISH = {"Foreign Investment Law of the People's Republic of China": "外商投资法",
           "Enterprise Income Tax Law of the People's Republic of China": "企业所得税法",
           "Patent Law of the People's Republic of China": "专利法",
           "Regulations for the Implementation of the Enterprise Income Tax Law of the People's Republic of China":
               "企业所得税法实施条例",
           **english_aliases()}


@pytest.mark.parametrize(("question", "expected"), [
    ("Article 93 of the EIT implementation regulations", ("企业所得税法实施条例", "第九十三条")),
    ("What does Article 22 of the Foreign Investment Law implementing regulations say?",
     ("外商投资法实施条例", "第二十二条")),
    ("article 12 of the implementation rules of the Patent Law", ("专利法实施细则", "第十二条")),
    ("Regulations for the Implementation of the Enterprise Income Tax Law, Article 92",
     ("企业所得税法实施条例", "第九十二条")),
    ("Article 28 of the Enterprise Income Tax Law", ("企业所得税法", "第二十八条")),
    ("外商投资法实施条例第二十二条", ("外商投资法实施条例", "第二十二条")),
    ("企业所得税法实施条例第93条", ("企业所得税法实施条例", "第九十三条")),
    ("外商投资法第二十二条", ("外商投资法", "第二十二条")),
    ("专利法实施条例第十二条", ("专利法实施细则", "第十二条")),
])
def test_exact_lookup_of_regulations(question, expected):
    ref = find_reference(question, KNOWN, ENGLISH, chinese_aliases())
    assert ref is not None and (ref.short_title, ref.clause_key) == expected


def test_english_document_mentions():
    assert english_documents("Who counts as a high-tech enterprise under the EIT implementation regulations?",
                             ENGLISH, KNOWN) == ["企业所得税法实施条例"]
    assert english_documents("Does the Foreign Investment Law protect trade secrets?", ENGLISH, KNOWN) == ["外商投资法"]
    # A name outside the known titles is not a mention.
    assert english_documents("the patent rules", ENGLISH, KNOWN - {"专利法实施细则"}) == []
