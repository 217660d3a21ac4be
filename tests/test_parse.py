from rag.corpus.chunk import chunk_document, count_tokens, split_sentences, split_to_cap
from rag.corpus.numerals import cn_to_int, int_to_cn
from rag.corpus.parse import parse_document, parse_law, parse_policy
from rag.corpus.references import find_reference
from rag.models import Document
from rag.settings import REPO_ROOT

NOTICE = (REPO_ROOT / "corpus" / "documents" / "notice-2025-05-21.md").read_text(encoding="utf-8").split("---\n", 2)[2]


def test_numerals_round_trip():
    assert cn_to_int("一百零一") == 101 and cn_to_int("十三") == 13 and cn_to_int("二十") == 20
    assert cn_to_int("一千二百四十") == 1240 and cn_to_int("21") == 21
    assert int_to_cn(101) == "一百零一" and int_to_cn(110) == "一百一十" and int_to_cn(13) == "十三"
    assert all(cn_to_int(int_to_cn(n)) == n for n in range(1, 1300))


def test_notice_structure():
    clauses = parse_policy(NOTICE)
    measures = [c for c in clauses if c.kind == "measure"]
    assert [c.number for c in measures] == list(range(1, 17))
    assert [c.kind for c in clauses[:3]] == ["header", "preamble", "part"]
    assert clauses[-1].kind == "closing" and NOTICE[clauses[-1].start :].startswith("各地区、各有关部门")
    m13 = next(c for c in measures if c.number == 13)
    assert m13.section_path == ("五、强化要素保障", "（十三）提升土地资源利用效率")
    text = NOTICE[m13.start : m13.end]
    assert text.startswith("（十三）") and "标准地" in text and "（十四）" not in text
    parts = {c.section_path[0] for c in measures}
    assert len(parts) == 4 and "一、总体要求" == clauses[2].key  # part 一 has text, no measures


LAW = """中华人民共和国示例法
第一章 总则
第一条 为了示例，制定本法。
第二条 本法适用于：
（一）甲；
（二）乙。
第二章 细则
第一节 一般规定
第一百零一条 前款规定的，依照第十条规定处理。
第十条规定的情形，不适用本条。
第102条 阿拉伯数字的条。
"""


def test_law_articles_keep_paragraphs_and_items():
    clauses = parse_law(LAW)
    assert [c.key for c in clauses] == ["第一条", "第二条", "第一百零一条", "第102条"]
    second = LAW[clauses[1].start : clauses[1].end]
    assert "（一）甲；" in second and "（二）乙。" in second
    art101 = clauses[2]
    assert art101.number == 101 and art101.section_path == ("第二章 细则", "第一节 一般规定", "第一百零一条")
    # A paragraph that begins by citing an article is not a new article.
    assert "第十条规定的情形" in LAW[art101.start : art101.end]
    assert clauses[3].number == 102
    assert parse_document(LAW) == clauses


def test_sentences_and_cap_never_cut_a_sentence():
    text = "第一句话。第二句话；第三句话！"
    assert [text[s:e] for s, e in split_sentences(text)] == ["第一句话。", "第二句话；", "第三句话！"]
    long = "支持国家级经开区发展先进制造业和现代服务业。" * 30
    spans = split_to_cap(long, 100)
    assert len(spans) > 1
    assert "".join(long[s:e] for s, e in spans) == long
    for s, e in spans:
        assert long[s:e].endswith("。") and count_tokens(long[s:e]) <= 100


def _doc(text: str) -> Document:
    return Document(doc_id="d", title="示例", short_title="工作方案", doc_type="政策文件", issuer="商务部",
                    date="2025-05-21", status="现行有效", text=text, source="x")


def test_chunks_carry_labels_offsets_and_split_parts():
    doc = _doc(NOTICE)
    chunks = chunk_document(doc, parse_document(NOTICE), cap=120)
    m13 = [c for c in chunks if c.clause_key == "（十三）"]
    assert len(m13) > 1 and all(c.label == "《工作方案》（十三）" for c in m13)
    assert [c.part for c in m13] == list(range(1, len(m13) + 1)) and m13[0].parts == len(m13)
    for c in chunks:
        assert NOTICE[c.start : c.end] == c.text and c.token_count == count_tokens(c.text)
        assert c.token_count <= 120 or len(split_sentences(c.text)) == 1
    assert m13[0].section_path == "五、强化要素保障 > （十三）提升土地资源利用效率"
    whole = chunk_document(doc, parse_document(NOTICE), cap=400)
    assert len({c.chunk_id for c in whole}) == len(whole)


def test_clause_references():
    known = {"外商投资法", "外商投资法实施条例", "工作方案", "企业所得税法"}
    english = {"Foreign Investment Law of the People's Republic of China": "外商投资法"}
    ref = find_reference("外商投资法第二十一条", known, english)
    assert (ref.short_title, ref.clause_key) == ("外商投资法", "第二十一条")
    assert find_reference("《外商投资法实施条例》第6条", known, english).short_title == "外商投资法实施条例"
    assert find_reference("Article 21 of the Foreign Investment Law", known, english).clause_key == "第二十一条"
    assert find_reference("第十三项措施讲什么", known, english).clause_key == "（十三）"
    assert find_reference("what does measure 8 say", known, english).clause_key == "（八）"
    assert find_reference("M0用地能建住宅吗？", known, english) is None


def test_a_heading_run_into_the_next_is_split():
    from rag.corpus.parse import split_headings

    assert split_headings("第二编 污染防治第一分编 通则") == ["第二编 污染防治", "第一分编 通则"]
    assert split_headings("第三章 依照第二章规定") == ["第三章 依照第二章规定"]  # a reference stays
    law = "法\n第二编 污染防治第一分编 通则\n第一章 一般规定\n第一条 甲。\n第二条 乙。\n第二分编 大气\n第三条 丙。\n"
    paths = [c.section_path for c in parse_law(law)]
    assert paths[0] == ("第二编 污染防治", "第一分编 通则", "第一章 一般规定", "第一条")
    assert paths[2] == ("第二编 污染防治", "第二分编 大气", "第三条")


def test_an_article_the_source_merged_into_the_one_before_is_split_out_with_a_note():
    from rag.corpus.defects import source_note, split_merged

    body = "甲。\n境主管部门责令改正，处二万元以上二十万元以下的罚款；拒不改正的，责令停产整治：\n（一）乙。"
    assert split_merged("生态环境法典", "第一千一百一十九条", body) == [
        ("第一千一百一十九条", "甲。"),
        ("第一千一百二十条", "境主管部门责令改正，处二万元以上二十万元以下的罚款；拒不改正的，责令停产整治：\n（一）乙。")]
    assert split_merged("生态环境法典", "第一千一百一十八条", body) == [("第一千一百一十八条", body)]
    assert "opening words" in source_note("生态环境法典", "第一千一百二十条", "en")
    assert source_note("生态环境法典", "第一条", "zh") == ""


def test_every_bundled_law_has_each_article_of_laws_db_once_and_in_order():
    """Each laws.db article is one clause with its number and its text; the only extra
    clauses are the articles the source merged into another (rag/data/source_defects.json)."""
    from rag.corpus.defects import defects
    from rag.corpus.laws import _connect, law_db_path, load_laws, load_manifest
    from rag.corpus.normalize import join_broken_lines, normalize_text
    from rag.settings import Settings

    settings = Settings()
    docs = load_laws(load_manifest(settings.laws_manifest), as_of=settings.as_of_date)
    split_out = {(d.document, d.article) for d in defects() if d.split_from}
    con = _connect(law_db_path())
    try:
        for doc in docs:
            rows = con.execute("SELECT article_no, article_text FROM articles WHERE law_id = ? "
                               "ORDER BY article_no_arabic, id", (doc.source.split(":", 1)[1],)).fetchall()
            clauses = [c for c in parse_law(doc.text) if c.kind == "article"]
            keys = [c.key for c in clauses if (doc.short_title, c.key) not in split_out]
            assert keys == [no for no, _ in rows], doc.short_title
            texts = {c.key: doc.text[c.start:c.end] for c in clauses}
            for no, text in rows:
                assert join_broken_lines(normalize_text(text or ""))[:20] in texts[no], (doc.short_title, no)
    finally:
        con.close()
