"""Answers over the whole default corpus: the issue's acceptance questions and the
invariant that every quote is a verbatim substring of its cited clause."""

from __future__ import annotations

import json

import pytest

from rag.index.clauses import Filters
from rag.qa.fusion import rrf
from rag.settings import REPO_ROOT


def test_rrf_known_answer():
    fused = rrf({"bm25": ["a", "b"], "dense": ["b", "c"]}, {"bm25": 1.0, "dense": 1.0}, k=60)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["a"] == pytest.approx(1 / 61) and fused["c"] == pytest.approx(1 / 62)
    assert max(fused, key=fused.__getitem__) == "b"
    weighted = rrf({"bm25": ["a"], "dense": ["c"]}, {"bm25": 2.0, "dense": 1.0}, k=60)
    assert weighted["a"] == pytest.approx(2 / 61)


def test_cross_border_ecommerce_in_english(full_assistant):
    r = full_assistant.ask("Does the plan support cross-border e-commerce?")
    assert not r.abstained and r.language == "en"
    assert r.citations[0].label == "《工作方案》（八）"
    assert any("跨境电商" in q for q in r.citations[0].quotes)
    assert r.answer.startswith("According to the corpus") and "Measure 8" in r.answer


def test_m0_residential_is_forbidden(full_assistant):
    r = full_assistant.ask("M0用地能建住宅吗？")
    assert r.citations[0].label == "《工作方案》（十三）"
    assert any("住宅" in q and "新型产业用地（M0）" in q for q in r.citations[0].quotes)


def test_named_article_comes_first(full_assistant):
    r = full_assistant.ask("外商投资法第二十一条")
    assert r.retrieved[0].chunk.label == "《外商投资法》第二十一条"
    assert r.citations[0].label == "《外商投资法》第二十一条"
    en = full_assistant.ask("What does Article 21 of the Foreign Investment Law say?")
    assert en.retrieved[0].chunk.label == "《外商投资法》第二十一条"


def test_off_topic_abstains(full_assistant):
    r = full_assistant.ask("经开区管委会每天几点上班？")
    assert r.abstained and not r.citations and r.related
    assert "没有找到" in r.answer


def test_repealed_law_is_flagged_and_only_shown_when_named(full_assistant):
    for filters in (Filters(in_force_only=False), Filters()):
        # Naming the clause shows it even under "in force only", flagged.
        r = full_assistant.ask("环境保护法第一条", filters=filters)
        assert r.citations[0].label == "《环境保护法》第一条"
        assert r.citations[0].status == "已废止" and not r.citations[0].in_force
        assert any("已废止" in w for w in r.warnings) and "已废止" in r.answer
    searched = full_assistant.ask("企业排放污染物要承担什么环境保护责任？")
    assert searched.citations and all(c.in_force for c in searched.citations)


def test_follow_up_carries_the_subject(full_assistant):
    history = [{"role": "user", "content": "M0用地能建住宅吗？"},
               {"role": "assistant", "content": "不能……[1]"}]
    r = full_assistant.ask("那三类工业用地呢？", history=history)
    assert r.citations and r.citations[0].label == "《工作方案》（十三）"
    assert any("三类工业用地" in q for q in r.citations[0].quotes)


def test_json_contract_shape(full_assistant):
    d = full_assistant.ask("Can I send my profits home?").to_dict()
    assert d["citations"][0]["label"] == "《外商投资法》第二十一条"
    for key in ("question", "language", "answer", "abstained", "citations", "retrieved", "timings_ms"):
        assert key in d
    c = d["citations"][0]
    assert set(c) >= {"n", "label", "doc_id", "doc_title", "status", "date", "section_path", "text", "quotes"}
    assert set(d["retrieved"][0]) >= {"label", "text", "scores"}
    json.dumps(d, ensure_ascii=False)


def _questions() -> list[tuple[str, list[dict]]]:
    items = []
    for path in sorted((REPO_ROOT / "eval" / "items").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                obj = json.loads(line)
                items.append((obj["question"], obj.get("history") or []))
    return items


def test_every_quote_is_verbatim_in_its_clause(full_assistant):
    questions = _questions()
    assert len(questions) >= 200
    checked = 0
    for question, history in questions:
        r = full_assistant.ask(question, history=history)
        for c in r.citations:
            for q in c.quotes:
                assert q in c.text, (question, c.label, q)
                assert f"「{q}」[{c.n}]" in r.answer
                checked += 1
        assert r.abstained == (not r.citations)
    assert checked > 150


def test_langchain_retriever_view(full_assistant):
    from rag.qa.langchain_retriever import ClauseRetriever

    docs = ClauseRetriever(searcher=full_assistant.searcher, k=3).invoke("M0用地能建住宅吗？")
    assert len(docs) == 3 and docs[0].metadata["label"] == "《工作方案》（十三）"
    assert "住宅" in docs[0].page_content


def test_figure_rule_needs_an_explicit_quantity_ask_and_a_real_figure():
    from rag.qa.scope import asks_for_figure, has_figure

    assert asks_for_figure("小型微利企业的税率是多少？") and asks_for_figure("How many days does the authority have?")
    assert not asks_for_figure("Can an agency charge a fee for the filing?")  # yes/no, mentions a fee
    assert not asks_for_figure("土地使用权转让价格明显低于市场价，政府可以怎么做？")
    assert has_figure("减按20%的税率征收") and has_figure("应当在十五日内作出决定")
    assert not has_figure("商务部 2025年5月21日 商资发〔2025〕12号")  # a date and a document number


def test_only_dictionary_places_count_as_names_the_corpus_lacks():
    from rag.corpus.places import place_names

    # jieba's HMM tagged "…法里" ("in the … law") as a place, so the question abstained.
    assert place_names("安全生产法里有没有规定？") == []
    assert place_names("能源法里对这个怎么说") == []
    assert place_names("苏州工业园区的厂房租金是多少？") == ["苏州工业园区"]
    assert place_names("What is the minimum wage in Kunshan?") == ["Kunshan"]


def test_a_ranking_or_an_appointment_is_answered_only_by_a_clause_that_states_one():
    from rag.qa.scope import unanswered_ask

    plan = "支持国家级经开区在国家政策框架内建立完善符合实际的绩效考核和激励机制。"
    assert unanswered_ask("哪个经开区在去年的考核评价里排名第一？", plan) == "a ranking position"
    assert unanswered_ask("Which zone ranked first in the latest evaluation?", plan) == "a ranking position"
    assert unanswered_ask("管委会主任由谁任命？", plan) == "who appoints an official"
    assert unanswered_ask("Who appoints the head of a zone?", plan) == "who appoints an official"
    # Asking how results are used, or a clause that does state it, is not such a question.
    assert unanswered_ask("考核评价的结果会怎么运用？", plan) is None
    assert unanswered_ask("评标委员会推荐的中标候选人排第几名的中标？", "排名第一的中标候选人为中标人") is None
    assert unanswered_ask("负责人由谁任命？", "由本级人民政府任免") is None


@pytest.mark.slow
def test_which_zone_ranked_first_is_not_found_with_related_clauses(full_assistant):
    r = full_assistant.ask("Which national ETDZ ranked first in the latest comprehensive evaluation?")
    assert r.abstained and not r.citations and r.related


@pytest.mark.slow
def test_a_follow_up_that_states_itself_keeps_the_previous_document_not_its_words(full_assistant):
    from rag.corpus.normalize import normalize_query
    from rag.qa.followup import FollowUp

    previous = "政府投资项目能不能让施工单位垫资？"
    question = "那如果建设单位已经要求施工方垫资开工了，有关部门会怎么处理这个项目，领导要不要承担责任？"
    history = [{"role": "user", "content": previous}, {"role": "assistant", "content": "不能。"}]
    r = full_assistant.ask(question, history=history)
    assert [c.label for c in r.citations] == ["《政府投资条例》第三十四条"], r.answer[:300]
    # What the rule replaces: the previous words pull the search back to the previous clause
    # (垫资 is forbidden), and the question alone leaves the regulation.
    searcher, query = full_assistant.searcher, normalize_query(question)
    carried = searcher.search(query, k=1, **searcher.follow_up_args(FollowUp(context=previous)))
    alone = searcher.search(query, k=1)
    assert carried[0].chunk.label == "《政府投资条例》第二十二条"
    assert alone[0].chunk.short_title != "政府投资条例"


@pytest.mark.slow
def test_a_chain_of_follow_ups_keeps_the_document_of_the_conversation(full_assistant):
    from dataclasses import replace

    from rag.corpus.normalize import normalize_query
    from rag.qa.followup import follow_up

    history = [{"role": "user", "content": "发明专利的保护期是多久？"}, {"role": "assistant", "content": "二十年。"},
               {"role": "user", "content": "那外观设计呢？"}, {"role": "assistant", "content": "十五年。"}]
    question = "那外观设计专利权的保护范围是怎么确定的，是以图片或者照片中的产品设计为准吗？"
    r = full_assistant.ask(question, history=history)
    assert r.citations and r.citations[0].label == "《专利法》第六十四条", r.answer[:300]
    # "那外观设计呢？" asked alone leads to the implementing rules, not the law the talk is about.
    searcher, query = full_assistant.searcher, normalize_query(question)
    follow = follow_up(query, history)
    assert follow.topic == "那外观设计呢？" and follow.topic_follows is not None
    unchained = searcher.search(query, k=1, **searcher.follow_up_args(replace(follow, topic_follows=None)))
    assert unchained[0].chunk.short_title != "专利法"


@pytest.mark.slow
def test_regulations_answer_conditions_with_the_law_as_see_also(full_assistant):
    # 小型微利企业 / 高新技术企业 conditions sit in the implementing regulation.
    small = full_assistant.ask("小型微利企业的标准是什么？")
    high = full_assistant.ask("What conditions must a high-tech enterprise meet for the 15% rate?")
    for r, article in ((small, "第九十二条"), (high, "第九十三条")):
        assert not r.abstained, r.warnings
        labels = [c.label for c in r.citations]
        law, regulation = "《企业所得税法》第二十八条", f"《企业所得税法实施条例》{article}"
        assert regulation in labels or law in labels, labels
        c = r.citations[0]
        assert (law in c.see_also) if c.label == regulation else (regulation in c.see_also), (c.label, c.see_also)
    # The English answer names the cited document in English, whichever of the two it is.
    cited = high.citations[0].label
    english = ("Regulations for the Implementation of the Enterprise Income Tax Law" if "实施条例" in cited
               else "Enterprise Income Tax Law")
    assert english in high.answer, (cited, high.answer[:300])
    named = full_assistant.ask("Article 93 of the EIT implementation regulations")
    assert "Regulations for the Implementation of the Enterprise Income Tax Law" in named.answer
    assert "Article 93" in named.citations[0].english_title


@pytest.mark.slow
def test_exact_lookup_of_regulation_articles_in_both_languages(full_assistant):
    for q, label in (("外商投资法实施条例第二十二条", "《外商投资法实施条例》第二十二条"),
                     ("企业所得税法实施条例第93条", "《企业所得税法实施条例》第九十三条"),
                     ("Article 93 of the EIT implementation regulations", "《企业所得税法实施条例》第九十三条"),
                     ("外商投资法第二十二条", "《外商投资法》第二十二条")):
        assert full_assistant.ask(q).citations[0].label == label, q


@pytest.mark.slow
def test_corpus_holds_the_notice_laws_and_regulations(full_assistant):
    docs = full_assistant.documents()
    by_type: dict[str, list] = {}
    for d in docs:
        by_type.setdefault(d.doc_type, []).append(d)
    assert len(by_type["政策文件"]) == 1 and len(by_type["法律"]) >= 25 and len(by_type["行政法规"]) >= 22
    assert all(d.issuer == "国务院" and d.clause_count > 0 for d in by_type["行政法规"])


@pytest.mark.slow
def test_a_figure_in_a_linked_clause_is_quoted_instead_of_abstaining(full_assistant):
    # The regulation article defines 公益性捐赠; the law article it explains holds the 12 %.
    r = full_assistant.ask("企业做公益捐赠，所得税前最多能扣多少？超出的部分怎么办？")
    assert not r.abstained, r.warnings
    law = next(c for c in r.citations if c.label == "《企业所得税法》第九条")
    assert any("12" in q for q in law.quotes)


def test_a_second_clause_is_cited_only_without_the_learned_confidence():
    from dataclasses import replace

    from rag.models import Chunk, ScoredChunk
    from rag.qa.compose import pick_quotes

    def clause(label: str, text: str) -> Chunk:
        return Chunk(chunk_id=label, doc_id="d", doc_title="t", short_title="工作方案", doc_type="政策文件",
                     issuer="商务部", date="2025-05-21", status="现行有效", label=label, clause_key=label,
                     kind="measure", section_path="", text=text, start=0, end=len(text), token_count=len(text),
                     ordinal=1)

    # The second clause's sentence matches the question far better than the first's (x1.3 rule).
    first = ScoredChunk(clause("A", "支持园区发展。"), 1, 0.5)
    second = ScoredChunk(clause("B", "支持跨境电商企业建设海外仓和跨境电商综合试验区。"), 2, 0.4)
    tokens = ["跨境电商", "海外仓", "综合试验区", "园区"]
    assert [r.chunk.label for r, _ in pick_quotes([first, second], tokens, False)] == ["A", "B"]
    ranked = [replace(first, confidence=0.5), replace(second, confidence=0.45)]
    assert [r.chunk.label for r, _ in pick_quotes(ranked, tokens, False)] == ["A"]


def test_which_follow_ups_carry_the_previous_turn():
    from rag.qa.followup import FollowUp, follow_up

    previous = "政府投资项目可以要求施工单位垫资吗？"
    history = [{"role": "user", "content": previous}, {"role": "assistant", "content": "……"}]
    words, document, nothing = FollowUp(context=previous), FollowUp(topic=previous), FollowUp()
    expected = {
        "那外资企业呢？": words,  # elliptic
        "What about a utility model, same?": words,
        "要是施工方已经垫了资呢？这事会有什么后果": words,  # a supposition put to the previous turn
        "这种情况要罚款吗？": words,  # points back at it
        "另外问下，我们园区平台公司想融资，区财政能出担保函吗？": nothing,  # opens a new topic
        "Thanks. Different question: can a foreigner work in the zone?": nothing,
        "如果企业在园区投资，可以享受什么优惠？": nothing,  # a whole question, no 呢
        "ok and for the M0 land, can they sell the floors?": words,  # courtesy, then a continuation
        "Switching topic: what about taxes for foreign firms?": nothing,
        # A continuation that states a whole question itself: its own words, the previous document.
        "那要是施工方已经垫了资，这个项目的审批部门会怎么处理，责任人要承担什么法律责任？": document,
        "And if the contractor has already advanced the money anyway, what penalties apply to the project owner, "
        "and who must correct it and by when?": document,
    }
    for question, carries in expected.items():
        assert follow_up(question, history) == carries, question
    assert follow_up("那外资企业呢？", None) == nothing
    # A chain: the previous question was itself elliptic, so its own search carries the one before.
    chain = [{"role": "user", "content": "发明专利保护多久？"}, *history]
    long_one = "那要是施工方已经垫了资，这个项目的审批部门会怎么处理，责任人要承担什么法律责任？"
    assert follow_up(long_one, chain) == document  # 政府投资项目… is not elliptic: nothing before it
    elliptic = [*history, {"role": "user", "content": "那外资企业呢？"}, {"role": "assistant", "content": "……"}]
    assert follow_up(long_one, elliptic) == FollowUp(topic="那外资企业呢？", topic_follows=FollowUp(context=previous))
    assert follow_up(long_one, elliptic, chain=1) == FollowUp(topic="那外资企业呢？")
    assert follow_up("那民营企业呢？", elliptic) == FollowUp(context=f"{previous} 那外资企业呢？")
    assert follow_up("那外资企业呢？", [{"role": "assistant", "content": "……"}]) == nothing
