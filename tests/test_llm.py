"""LLM mode with LangChain's fake chat models: the output checks, streaming, fallback."""

from __future__ import annotations

from langchain_core.language_models.fake_chat_models import FakeListChatModel

from rag.models import AskResult
from rag.qa.assistant import Assistant
from rag.qa.llm import fit_clauses, split_answer, verify

CLAUSES = {1: "国家级经开区工业用地原则上应实行“标准地”供应。", 2: "外国投资者的利润可以依法自由汇出。"}


def test_split_answer_keeps_markers_with_their_sentence():
    assert split_answer("应实行标准地供应。[1] 利润可以汇出。[2]") == ["应实行标准地供应。[1]", "利润可以汇出。[2]"]
    assert split_answer("Land is supplied as standard land [1]. Profits may be remitted [2].") == [
        "Land is supplied as standard land [1].", "Profits may be remitted [2]."]


def test_verify_removes_bad_markers_unmarked_sentences_and_false_quotes():
    answer = ("工业用地应「实行“标准地”供应」。[1]"
              "利润可以「依法自由汇出」。[2]"
              "外资企业免税五年。[3]"
              "这是没有来源的说法。"
              "利润可以「自由汇出且免税」。[2]")
    kept, removed = verify(answer, CLAUSES)
    assert kept == ["工业用地应「实行“标准地”供应」。[1]", "利润可以「依法自由汇出」。[2]"]
    assert len(removed) == 3
    assert any("[3] names no given clause" in r for r in removed)
    assert any("no clause marker" in r for r in removed)
    assert any("自由汇出且免税" in r for r in removed)


def _llm_assistant(settings, replies: list[str]) -> Assistant:
    a = Assistant(settings)
    a.chat_model = FakeListChatModel(responses=replies)
    return a


def test_llm_answer_streams_and_keeps_only_checked_sentences(tiny_settings):
    reply = "新型产业用地不得用于「开发住宅、商办用房等房地产项目」。[1] 另外还可以减免土地出让金。[9]"
    a = _llm_assistant(tiny_settings, [reply])
    pieces = list(a.ask_stream("M0用地能建住宅吗？", mode="llm"))
    result = pieces[-1]
    assert isinstance(result, AskResult) and result.mode == "llm"
    # Streamed sentence by sentence once checked: the unsupported one never shows.
    assert "".join(p for p in pieces[:-1] if isinstance(p, str)) == reply.split(" ")[0] + "\n"
    assert "土地出让金" not in result.answer and "[1]" in result.answer
    assert result.citations[0].label == "《工作方案》（十三）"
    assert result.citations[0].quotes == ["开发住宅、商办用房等房地产项目"]
    assert any("names no given clause" in w for w in result.warnings)


def test_llm_falls_back_to_extractive_when_nothing_survives(tiny_settings):
    a = _llm_assistant(tiny_settings, ["经开区可以随意建设住宅。"])
    result = a.ask("M0用地能建住宅吗？", mode="llm")
    assert result.citations and result.citations[0].label == "《工作方案》（十三）"
    assert result.answer.startswith("根据语料库中的条款")
    assert any("extractive" in w for w in result.warnings)


def test_llm_condenses_follow_up_before_retrieval(tiny_settings):
    a = _llm_assistant(tiny_settings, ["外国投资者的利润能否汇出境外？", "利润可以「自由汇入、汇出」。[1]"])
    history = [{"role": "user", "content": "外商投资法怎么保护外资？"}, {"role": "assistant", "content": "……"}]
    result = a.ask("那利润呢？", mode="llm", history=history)
    assert result.resolved_question == "那利润呢？" or "利润" in result.resolved_question
    assert result.citations[0].label == "《外商投资法》第二十一条"


def test_token_budget_keeps_at_least_one_clause(tiny_settings):
    a = Assistant(tiny_settings)
    results = a.search("M0用地能建住宅吗？", k=5)
    assert len(fit_clauses(results, 10)) == 1
    assert len(fit_clauses(results, 100000)) == 5
