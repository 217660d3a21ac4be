"""llm mode against a real HTTP endpoint (a scripted one, tests/fake_openai.py) through the
real OpenAI client: whatever the endpoint does, the user gets checked sentences or the
extractive answer with one line saying why, within the timeout, and nothing unchecked."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rag.models import AskResult
from rag.qa.assistant import Assistant
from rag.qa.llm import SentenceChecker, describe_failure, split_answer, verify
from rag.settings import Settings
from tests.fake_openai import FakeOpenAI, closed_port

QUESTION = "M0用地能建住宅吗？"
GOOD = "新型产业用地不得用于「开发住宅、商办用房等房地产项目」。[1]"
INVENTED = "经开区企业还可以减免全部土地出让金。"
TIMEOUT = 1.5


def _settings(tiny_settings: Settings, url: str, **extra) -> Settings:
    pytest.importorskip("langchain_openai", reason="llm mode needs the llm extra: pip install -e '.[llm]'")
    return tiny_settings.with_overrides(llm="openai", llm_base_url=url, llm_api_key="k",
                                        llm_model="fake", llm_timeout=TIMEOUT, **extra)


def _ask(settings: Settings, question: str = QUESTION, **kwargs) -> tuple[str, AskResult, float]:
    t0 = time.monotonic()
    pieces = list(Assistant(settings).ask_stream(question, mode="llm", **kwargs))
    result = pieces[-1]
    assert isinstance(result, AskResult)
    return "".join(p for p in pieces if isinstance(p, str)), result, time.monotonic() - t0


def _is_extractive(result: AskResult) -> bool:
    return result.answer.startswith("根据语料库中的条款") and result.citations[0].label == "《工作方案》（十三）"


def test_a_normal_streamed_reply_shows_only_the_checked_sentences(tiny_settings):
    with FakeOpenAI([("reply", GOOD + INVENTED)]) as api:
        streamed, result, _ = _ask(_settings(tiny_settings, api.url))
    assert streamed == GOOD + "\n"  # the invented sentence never reached the user
    assert INVENTED not in result.answer and result.answer.startswith(GOOD)
    assert result.citations[0].label == "《工作方案》（十三）"
    assert any("no clause marker" in w for w in result.warnings)
    assert api.requests[0]["stream"] is True and "开发住宅" in api.prompts()[0]


def test_a_reply_without_a_valid_marker_gives_the_extractive_answer(tiny_settings):
    with FakeOpenAI([("reply", "可以建住宅。[7] 经开区鼓励发展房地产。")]) as api:
        streamed, result, _ = _ask(_settings(tiny_settings, api.url))
    assert _is_extractive(result) and "房地产。" not in streamed and "[7]" not in streamed
    assert any("[7] names no given clause" in w for w in result.warnings)
    assert any("nothing in the model's answer passed" in w for w in result.warnings)


def test_a_quote_that_is_not_in_the_clause_is_removed(tiny_settings):
    with FakeOpenAI([("reply", "新型产业用地可以「建设住宅并自由出售」。[1]")]) as api:
        streamed, result, _ = _ask(_settings(tiny_settings, api.url))
    assert streamed == "" and _is_extractive(result)
    assert any("quote not found in the cited clause: 「建设住宅并自由出售」" in w for w in result.warnings)


@pytest.mark.parametrize("script, expected", [
    ([("die", GOOD + "另外，新型产业用地")], "stopped in the middle of its reply"),
    ([("hang", None)], f"did not answer within {TIMEOUT:g} s (RAG_LLM_TIMEOUT)"),
    ([("status", 401)], "refused the API key (HTTP 401); check OPENAI_API_KEY"),
    ([("status", 500)], "answered HTTP 500"),
    ([("malformed", None)], "sent a reply that could not be read"),
], ids=["killed-mid-reply", "never-answers", "wrong-key", "server-error", "malformed"])
def test_an_endpoint_fault_gives_the_extractive_answer_with_one_line_why(tiny_settings, script, expected):
    with FakeOpenAI(script) as api:
        streamed, result, seconds = _ask(_settings(tiny_settings, api.url))
    assert _is_extractive(result) and not result.abstained
    fault = [w for w in result.warnings if w.startswith("the language model")]
    assert len(fault) == 1 and expected in fault[0] and fault[0].endswith("showing the extractive answer")
    assert streamed in ("", GOOD + "\n")  # at most a checked sentence, before the fault
    assert seconds < TIMEOUT + 10  # no retries, no hang
    assert len(api.requests) == 1


def test_a_refused_connection_gives_the_extractive_answer(tiny_settings):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    _, result, _ = _ask(_settings(tiny_settings, url))
    assert _is_extractive(result)
    assert any(f"could not be reached at {url}" in w for w in result.warnings)


def test_a_failed_condense_answers_the_follow_up_extractively_without_a_second_wait(tiny_settings):
    history = [{"role": "user", "content": "M0用地是什么？"}, {"role": "assistant", "content": "……"}]
    with FakeOpenAI([("hang", None)]) as api:
        _, result, seconds = _ask(_settings(tiny_settings, api.url), "能建住宅吗？", history=history)
    assert len(api.requests) == 1 and seconds < 2 * TIMEOUT + 8
    assert result.citations and result.citations[0].label == "《工作方案》（十三）"
    assert any("did not answer within" in w for w in result.warnings)


def test_the_api_answers_llm_faults_with_200_and_the_warning(tiny_settings):
    from fastapi.testclient import TestClient

    from ui.app import build_app

    with FakeOpenAI([("status", 401)]) as api:
        with TestClient(build_app(Assistant(_settings(tiny_settings, api.url)))) as client:
            reply = client.post("/api/ask", json={"question": QUESTION, "mode": "llm"})
    assert reply.status_code == 200
    body = reply.json()
    assert body["citations"][0]["label"] == "《工作方案》（十三）"
    assert any("refused the API key" in w for w in body["warnings"])


# ---- the checker, on plain data ---------------------------------------------------

CLAUSES = {1: "国家级经开区工业用地原则上应实行“标准地”供应。", 2: "外国投资者的利润可以依法自由汇出。",
           3: "新型产业用地不得用于开发住宅。"}
REPLY = ("利润可以「依法自由汇出」。[2] 这句没有来源。工业用地应实行标准地供应。[1][2] "
         "新型产业用地「不得用于开发住宅」。[3] 免税五年。[9]")


def test_streamed_checking_releases_the_same_sentences_whatever_the_piece_boundaries():
    whole_kept, whole_removed = verify(REPLY, CLAUSES)
    assert whole_kept == ["利润可以「依法自由汇出」。[2]", "工业用地应实行标准地供应。[1][2]",
                          "新型产业用地「不得用于开发住宅」。[3]"]
    for size in (1, 2, 3, 5, 8, 13):
        checker = SentenceChecker(CLAUSES)
        shown = [s for i in range(0, len(REPLY), size) for s in checker.feed(REPLY[i:i + size])]
        shown += checker.finish()
        assert checker.kept == whole_kept and checker.removed == whole_removed, size
        # Renumbered by first use: [2] → [1], [1] → [2], [3] stays.
        assert shown == ["利润可以「依法自由汇出」。[1]", "工业用地应实行标准地供应。[2][1]",
                         "新型产业用地「不得用于开发住宅」。[3]"], size


def test_a_sentence_is_held_back_until_its_markers_are_complete():
    checker = SentenceChecker(CLAUSES)
    assert checker.feed("工业用地应实行标准地供应。") == []
    assert checker.feed("[1]") == []
    assert checker.feed("[") == []
    assert checker.feed("2] 另") == ["工业用地应实行标准地供应。[1][2]"]


def test_a_reply_echoing_the_instructions_is_removed_though_its_markers_are_valid():
    echo = ("Every sentence of your answer must end with the marker of the clause that supports it, "
            "like [1] or [2][3].")
    kept, removed = verify(echo + " 工业用地应实行标准地供应。[1]", CLAUSES)
    assert kept == ["工业用地应实行标准地供应。[1]"]
    assert removed and removed[0].startswith("repeats the instructions")
    assert split_answer(echo) == [echo]


def test_failures_are_described_in_one_line_with_what_to_check():
    s = Settings(llm_base_url="http://127.0.0.1:9/v1", llm_timeout=60)

    class AuthenticationError(Exception):
        status_code = 401

    assert "HTTP 401" in describe_failure(AuthenticationError("no"), s)
    assert "did not answer within 60 s" in describe_failure(TimeoutError("slow"), s)
    assert "could not be reached at http://127.0.0.1:9/v1" in describe_failure(ConnectionRefusedError(), s)
    line = describe_failure(RuntimeError("a\nb" * 200), s)
    assert "\n" not in line and len(line) < 200 and line.endswith("showing the extractive answer")


def test_the_default_timeout_is_documented():
    assert Settings().llm_timeout == 60
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert "RAG_LLM_TIMEOUT" in readme and "60 s" in readme
