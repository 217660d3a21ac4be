"""Pure HTML rendering of the web app: escaping, highlighting, abstention, labels."""

from __future__ import annotations

import re

import pytest

from rag.models import AddedFiles, AskResult, Chunk, Citation, ScoredChunk
from ui import render
from ui.labels import label

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
HOSTILE = f"恶意{SCRIPT}文本{IMG}&amp;"


def chunk(text: str = "支持跨境电商赋能产业发展。", **kw) -> Chunk:
    base = dict(chunk_id="d#1", doc_id="d", doc_title="商务部关于印发《工作方案》的通知", short_title="工作方案",
                doc_type="政策文件", issuer="商务部", date="2025-05-21", status="现行有效",
                label="《工作方案》（八）", clause_key="（八）", kind="measure",
                section_path="三、提升开放型经济水平 > （八）推动外贸多元创新发展", text=text, start=0,
                end=len(text), token_count=len(text), ordinal=8)
    base.update(kw)
    return Chunk(**base)


def citation(n: int = 1, text: str = "（八）推动外贸多元创新发展。支持跨境电商赋能产业发展。", quotes=None, **kw) -> Citation:
    base = dict(n=n, label=f"《工作方案》（{ {1: '八', 2: '十三'}.get(n, '十六')}）", doc_id="d", doc_title="商务部关于印发《工作方案》的通知",
                status="现行有效", date="2025-05-21", section_path="三、提升开放型经济水平", text=text,
                quotes=["支持跨境电商赋能产业发展。"] if quotes is None else quotes,
                english_title="Work Plan on ETDZs")
    base.update(kw)
    return Citation(**base)


def result(**kw) -> AskResult:
    base = dict(question="Does the plan support cross-border e-commerce?", language="en",
                answer="Yes: the plan supports cross-border e-commerce [1].", abstained=False,
                citations=[citation()], retrieved=[], timings_ms={"total": 12.0})
    base.update(kw)
    return AskResult(**base)


def assert_inert(html: str) -> None:
    """No executable markup made it through: only escaped forms remain."""
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert not re.search(r"<[^>]+\bon\w+\s*=", html, re.IGNORECASE)


# --------------------------------------------------------------------------- highlight


def test_highlight_marks_quotes_and_escapes_the_rest():
    out = render.highlight("甲<b>乙</b>。支持跨境电商。丙", ["支持跨境电商。"])
    assert out == "甲&lt;b&gt;乙&lt;/b&gt;。<mark>支持跨境电商。</mark>丙"


def test_highlight_escapes_hostile_text_and_hostile_quotes():
    out = render.highlight(HOSTILE, [SCRIPT, IMG])
    assert_inert(out)
    assert out.count("<mark>") == 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "&amp;amp;" in out  # a literal "&amp;" in the text stays visible as text


def test_highlight_never_matches_inside_an_entity():
    # "amp" is in the escaped form of "&" but not in the text: nothing to mark.
    assert render.highlight("A & B", ["amp", "lt"]) == "A &amp; B"


def test_highlight_merges_overlaps_and_tolerates_missing_final_stop():
    assert render.highlight("abcdef", ["abc", "bcd"]) == "<mark>abcd</mark>ef"
    assert render.highlight("支持跨境电商，鼓励合作", ["支持跨境电商。"]) == "<mark>支持跨境电商</mark>，鼓励合作"
    assert render.highlight("text", ["", "  "]) == "text"


def test_highlight_ignores_case_for_latin_terms():
    assert render.highlight("新型产业用地（M0）", ["m0"]) == "新型产业用地（<mark>M0</mark>）"


def test_highlight_marks_every_occurrence_with_a_class():
    out = render.highlight("用地和用地", ["用地"], css_class="term")
    assert out.count('<mark class="term">用地</mark>') == 2


# --------------------------------------------------------------------------- answer, badges


def test_answer_links_only_known_markers_and_escapes():
    out = render.answer_html(f"见 [1] 与 [7] {SCRIPT}", link_refs=True, valid=[1])
    assert '<a class="cite-ref" href="#cite-card-1" data-n="1">[1]</a>' in out
    assert "[7]" in out and 'data-n="7"' not in out
    assert_inert(out)
    old = render.answer_html("见 [1]", link_refs=False)
    assert "cite-ref-old" in old and "<a" not in old


@pytest.mark.parametrize(("status", "cls"), [("现行有效", "ok"), ("已废止", "bad"), ("已被修改", "bad"),
                                             ("尚未施行", "pending"), ("", "bad")])
def test_status_badge_colours(status, cls):
    assert f"badge-{cls}" in render.status_badge(status, "zh")


def test_status_badge_glosses_in_english_and_escapes():
    assert "已废止 · repealed" in render.status_badge("已废止", "en")
    assert_inert(render.status_badge(IMG, "en"))


# --------------------------------------------------------------------------- citations panel


def test_citation_card_has_everything_and_english_title_for_english_questions():
    html = render.render_citations(result(), "en")
    assert "《工作方案》（八）" in html
    assert "Work Plan on ETDZs" in html
    assert "badge-ok" in html and "2025-05-21" in html and "三、提升开放型经济水平" in html
    assert "<mark>支持跨境电商赋能产业发展。</mark>" in html
    zh = render.render_citations(result(language="zh"), "zh")
    assert "Work Plan on ETDZs" not in zh


def test_citation_card_opens_linked_clauses_and_the_coming_version():
    law = citation(label="《企业所得税法》第二十八条", text="第二十八条 符合条件的小型微利企业，减按20%的税率征收企业所得税。",
                   quotes=[], see_also=["《企业所得税法实施条例》第九十二条", "《企业所得税法实施条例》第九十三条", SCRIPT],
                   other_version={"label": "《商标法（2026-06-26）》第十条", "status": "尚未生效",
                                  "effective_date": "2027-01-01", "date": "2026-06-26"})
    texts = {"《企业所得税法实施条例》第九十二条": "第九十二条 企业所得税法第二十八条第一款所称符合条件的小型微利企业…",
             "《商标法（2026-06-26）》第十条": IMG}
    html = render.render_citations(result(citations=[law]), "en", clause_text=texts.get)
    assert ('<details class="linked-clause"><summary>《企业所得税法实施条例》第九十二条</summary>'
            '<div class="clause-text">第九十二条 企业所得税法第二十八条第一款所称') in html
    # No text known: the label is shown without a link; hostile text stays inert.
    assert '<span class="linked-clause">《企业所得税法实施条例》第九十三条</span>' in html
    assert "Revised text takes effect 2027-01-01" in html and "See also" in html
    assert_inert(html)
    zh = render.render_citations(result(citations=[law], language="zh"), "zh")
    assert "修改后的文本自2027-01-01起施行" in zh and "另见" in zh


def test_focused_citation_comes_first():
    r = result(citations=[citation(1), citation(2), citation(3)])
    html = render.render_citations(r, "zh", focus=3)
    order = re.findall(r'id="cite-card-(\d)"', html)
    assert order == ["3", "1", "2"]
    assert 'class="cite-card focus" id="cite-card-3"' in html


def test_citation_panel_escapes_hostile_clause_and_metadata():
    bad = citation(text=HOSTILE, quotes=[IMG], label=SCRIPT, doc_title=IMG, section_path=SCRIPT,
                   english_title=SCRIPT, date=IMG, status=SCRIPT)
    html = render.render_citations(result(citations=[bad]), "en")
    assert_inert(html)
    assert "<mark>&lt;img src=x onerror=alert(1)&gt;</mark>" in html


def test_not_in_force_citation_is_flagged():
    html = render.render_citations(result(citations=[citation(status="已废止", in_force=False)]), "zh")
    assert "not-in-force" in html and "badge-bad" in html


def test_empty_panel_and_choices():
    assert "Ask a question" in render.render_citations(None, "both")
    assert "cites no clause" in render.render_citations(result(citations=[], abstained=True), "en")
    assert render.citation_choices(None) == []
    assert render.citation_choices(result()) == [("[1] 《工作方案》（八）", "1")]


# --------------------------------------------------------------------------- transcript


def test_transcript_escapes_questions_and_answers():
    turns = [{"question": f"问{SCRIPT}", "answer": "", "result": result(question=SCRIPT, answer=f"{IMG} [1]")}]
    html = render.render_transcript(turns)
    assert_inert(html)
    assert "&lt;script&gt;" in html and 'data-n="1"' in html


def test_abstention_looks_different_and_lists_related_clauses():
    related_chunk = chunk(label="《工作方案》（六）", text="落实好境外投资者以分配利润再投资递延纳税等税收优惠政策。")
    r = result(question="What tax incentives exist for reinvesting profits?", abstained=True, citations=[],
               answer="The documents do not answer this directly.", related=["《工作方案》（六）", "外商投资法第二十一条"],
               retrieved=[ScoredChunk(related_chunk, 1, 0.2)])
    html = render.render_transcript([{"question": r.question, "answer": r.answer, "result": r}])
    assert "msg bot abstained" in html
    assert "No clause answers this question directly" in html
    assert "Related clauses (not an answer)" in html and "外商投资法第二十一条" in html
    listed = AskResult(**{**r.__dict__, "answer": "No basis.\nRelated clauses (not an answer):\n"
                                                   "- 《工作方案》（六）\n- 外商投资法第二十一条"})
    again = render.render_transcript([{"question": r.question, "answer": "", "result": listed}])
    assert 'class="related"' not in again and "msg bot abstained" in again  # not listed twice
    panel = render.render_citations(r, "zh")
    assert "相关条款（非答案）" in panel and "related-card" in panel and "再投资递延纳税" in panel
    assert "非答案" in panel


def test_warnings_are_visible():
    r = result(warnings=["《环境保护法》已废止", SCRIPT])
    html = render.render_transcript([{"question": "q", "answer": r.answer, "result": r}], "zh")
    assert 'class="warnings"' in html and "《环境保护法》已废止" in html
    assert_inert(html)


def test_sources_list_only_when_the_answer_does_not_name_them():
    plain = render.render_transcript([{"question": "q", "answer": "", "result": result()}])
    assert 'class="sources"' in plain
    named = result(answer="Yes [1].\n\nSources:\n[1] 《工作方案》（八） — 通知 — 现行有效")
    assert 'class="sources"' not in render.render_transcript([{"question": "q", "answer": "", "result": named}])


def test_only_the_latest_answer_links_to_the_panel():
    turns = [{"question": "a", "answer": "x", "result": result()},
             {"question": "b", "answer": "y", "result": result()}]
    html = render.render_transcript(turns)
    assert html.count('class="cite-ref"') == 1 and html.count("cite-ref-old") == 1


def test_streaming_error_and_empty_turns():
    assert "streaming" in render.render_transcript([{"question": "q", "answer": "部分"}])
    err = render.render_transcript([{"question": "q", "answer": "", "error": ("index missing", f"run rag build {IMG}")}])
    assert "msg bot error" in err and "index missing" in err
    assert_inert(err)
    assert "请在下方输入问题" in render.render_transcript([]) and "Type a question" in render.render_transcript([])


def test_labels_follow_question_language_unless_forced():
    en_turn = [{"question": "Can I send my profits home?", "answer": "", "result": result()}]
    assert ">You<" in render.render_transcript(en_turn)
    assert ">问<" in render.render_transcript(en_turn, "zh")
    zh_turn = [{"question": "M0用地能建住宅吗？", "answer": "", "result": result(language="zh")}]
    assert ">问<" in render.render_transcript(zh_turn)
    assert ">You<" in render.render_transcript(zh_turn, "en")


def test_component_labels_are_bilingual_by_default():
    assert label("in_force") == "仅现行有效 In force only"
    assert label("in_force", "en") == "In force only" and label("in_force", "zh") == "仅现行有效"


# --------------------------------------------------------------------------- markdown copy


def test_answer_markdown_lists_sources_quotes_and_related():
    md = render.answer_markdown(result(warnings=["法律已废止"]))
    assert md.startswith("**Q:** Does the plan support cross-border e-commerce?")
    assert "[1] 《工作方案》（八） — 商务部关于印发《工作方案》的通知 (Work Plan on ETDZs) (现行有效, 2025-05-21)" in md
    assert "> 支持跨境电商赋能产业发展。" in md and "> ⚠ 法律已废止" in md
    abst = render.answer_markdown(result(abstained=True, citations=[], related=["《工作方案》（六）"]))
    assert "相关条款（非答案）" in abst and "- 《工作方案》（六）" in abst


# --------------------------------------------------------------------------- retrieval test, corpus


def test_search_results_show_each_score_and_mark_terms():
    hit = ScoredChunk(chunk(text="严防以新型产业用地（M0）等名义开发住宅。"), 1, 0.0312,
                      {"bm25": 7.25, "dense": 0.812, "rerank": None}, ["住宅", "M0"])
    html = render.render_search_results([hit], "zh")
    assert "7.250" in html and "0.812" in html and "0.031" in html
    assert re.search(r"<b>rerank</b> —", html)
    assert '<mark class="term">住宅</mark>' in html and '<mark class="term">M0</mark>' in html
    assert "没有检索到结果" in render.render_search_results([], "zh")


def test_search_results_escape_hostile_chunks():
    hit = ScoredChunk(chunk(text=HOSTILE, label=IMG, doc_title=SCRIPT, section_path=IMG), 1, 0.5,
                      {"bm25": 1.0}, [SCRIPT, "<img"])
    assert_inert(render.render_search_results([hit], "en"))


def test_clause_tree_groups_by_section_and_escapes():
    chunks = [chunk(chunk_id="a", label="《工作方案》（八）"),
              chunk(chunk_id="b", label="《工作方案》（九）", section_path="三、提升开放型经济水平 > （九）加强开放平台功能"),
              chunk(chunk_id="c", label="《工作方案》（十三）", section_path="五、强化要素保障 > （十三）提升土地资源利用效率",
                    text=HOSTILE, parts=2, part=1)]
    html = render.render_clause_tree(chunks, "zh", open_id="c")
    assert html.count('class="section-group"') == 2
    assert "三、提升开放型经济水平" in html and "(2)" in html and "(1/2)" in html
    assert '<details class="clause" data-chunk="c" open>' in html
    assert_inert(html)
    assert "没有找到该条款" in render.render_clause_tree([], "zh")
    assert_inert(render.render_clause_cards(chunks, "en"))


def test_document_rows():
    from rag.qa.loaded import DocumentSummary

    d = DocumentSummary("id", SCRIPT, "s", "法律", "全国人大", "2019-03-15", "现行有效", 10, 9)
    assert render.document_rows([d]) == [[SCRIPT, "全国人大", "2019-03-15", "现行有效", 9, "id"]]


def test_upload_summary_lists_lines_and_skipped_files():
    html = render.render_upload_summary(AddedFiles(["added 1 document", SCRIPT], ["x"], [],
                                                   [{"path": "a.exe", "reason": IMG}]))
    assert "added 1 document" in html and "a.exe" in html and "Skipped" in html
    assert_inert(html)
    assert "Skipped" not in render.render_upload_summary(AddedFiles(["documents added 2"], ["a", "b"], [], []))


def test_gist_shows_under_the_clause_marked_unofficial_and_escaped():
    c = citation(gist_en="Zones may <b>convert</b> industrial land to R&D use.")
    html = render.citation_card(c, "en", english=True)
    assert html.index("clause-text") < html.index("gist-text")
    assert "Unofficial English gist" in html and "&lt;b&gt;convert&lt;/b&gt;" in html
    assert "gist" not in render.citation_card(citation(), "en", english=True)
    assert "Unofficial English gist (not the official text): Zones may" in render.answer_markdown(
        result(citations=[c]))
