"""A small load test (4 clients × 10 requests against `rag serve`, bench/load.py) and the
index switch under load: `rag ingest` while questions are being answered."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from bench import load as bench_load
from rag.index.ingest import ingest
from rag.qa.answerer import DENSE_UNAVAILABLE
from rag.qa.assistant import Assistant
from rag.settings import REPO_ROOT


def test_small_load_run_has_no_errors_and_no_cross_talk(hash_index, tmp_path):
    load = bench_load
    env = {**os.environ, "RAG_DATA_DIR": str(hash_index.data_dir), "RAG_CACHE_DIR": str(hash_index.cache_dir),
           "RAG_CORPUS_DIR": str(hash_index.corpus_dir), "RAG_EMBEDDER": "hash", "RAG_RATE_LIMIT": "5"}
    report = load.run_load(clients=4, requests=10, distinct=12, chat_clients=2, chat_requests=5,
                           openai_clients=2, openai_requests=5, env=env,
                           deadline_s=120, request_timeout=30, startup_timeout=120,
                           log_path=tmp_path / "server.log")
    table = report.table()
    assert report.requests == 40 and report.errors == 0 and report.mismatches == 0, (table, report.error_samples)
    # The web chat asked at the same time, through the same Assistant, and got the lone answers.
    assert (report.chat_requests, report.chat_errors, report.chat_mismatches) == (10, 0, 0), (
        table, report.error_samples)
    # So did two streaming /v1/chat/completions clients (follow-ups with their history too).
    assert (report.openai_requests, report.openai_errors, report.openai_mismatches) == (10, 0, 0), (
        table, report.error_samples)
    assert len(report.rss_mb) == 5 and all(m > 50 for m in report.rss_mb)
    assert "p50 / p95 / p99" in table and "| requests | 40 |" in table
    kinds = {b["kind"] for b in load.load_bodies(REPO_ROOT / "eval", 12)}
    assert kinds == {"zh", "en", "follow-up", "unanswerable"}


def test_fingerprint_sees_a_different_quote():
    load = bench_load
    a = {"abstained": False, "answer": "x [1]", "citations": [{"label": "L", "quotes": ["q1"]}]}
    b = {**a, "citations": [{"label": "L", "quotes": ["q2"]}]}
    assert load.fingerprint(a) == load.fingerprint(dict(a)) and load.fingerprint(a) != load.fingerprint(b)


def test_ingest_while_answering_switches_without_failing_a_request(hash_index, tmp_path):
    assistant = Assistant(hash_index)
    old_build = assistant.info.build
    stop = threading.Event()
    failures: list[str] = []
    answered = [0]

    def keep_asking() -> None:
        questions = ["M0用地能建住宅吗？", "外商投资法第二十一条", "Can I send my profits home?"]
        while not stop.is_set():
            for q in questions:
                try:
                    r = assistant.ask(q)
                    if DENSE_UNAVAILABLE in r.warnings or not r.citations:
                        failures.append(f"{q}: {r.warnings}")
                    answered[0] += 1
                except Exception as exc:  # any failure of an in-flight request fails the test
                    failures.append(f"{q}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=keep_asking) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        extra = tmp_path / "extra"
        extra.mkdir()
        (extra / "园区细则.md").write_text("# 某园区细则\n第一条 园区企业可以申请创新券，用于购买检测服务。\n",
                                          encoding="utf-8")
        summary = ingest(hash_index, add_paths=[str(extra)], progress=False)  # another "process"' ingest
        assert summary.changed
        before = answered[0]
        while answered[0] < before + 6 and not failures:  # some answers after the switch
            threading.Event().wait(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert failures == []
    assert assistant.info.build != old_build  # the server noticed the switch
    assert "某园区细则" in {d.title for d in assistant.documents()}
    assert assistant.search("创新券 检测服务", retrievers=("bm25",))[0].chunk.doc_title == "某园区细则"
    assert (Path(hash_index.data_dir) / "active-build").read_text() == assistant.info.build


def test_rag_ingest_in_another_process_switches_a_running_server(hash_index, tmp_path):
    """The deployment case: `rag serve` and `rag ingest` are two processes on one data dir."""
    import subprocess

    load = bench_load
    env = {**os.environ, "RAG_DATA_DIR": str(hash_index.data_dir), "RAG_CACHE_DIR": str(hash_index.cache_dir),
           "RAG_CORPUS_DIR": str(hash_index.corpus_dir), "RAG_EMBEDDER": "hash"}
    port = load.free_port()
    proc = load.start_server(port, env, tmp_path / "server.log")
    stop = threading.Event()
    answers: list[tuple[int, list[str]]] = []

    def keep_asking() -> None:
        while not stop.is_set():
            status, data, _ = load.post(port, {"question": "M0用地能建住宅吗？"}, 30)
            answers.append((status, data.get("warnings", []) if isinstance(data, dict) else ["bad JSON"]))

    try:
        load.wait_healthy(port, proc, 120)
        asker = threading.Thread(target=keep_asking)
        asker.start()
        extra = tmp_path / "extra"
        extra.mkdir()
        (extra / "细则.md").write_text("# 某园区细则\n第一条 园区企业可以申请创新券。\n第二条 创新券用于购买检测服务。\n"
                                      "第三条 本细则自发布之日起施行。\n", encoding="utf-8")
        subprocess.run([sys.executable, "-m", "rag.cli", "ingest", "--quiet", str(extra)], env=env, check=True,
                       cwd=REPO_ROOT, capture_output=True, timeout=120)
        status, data, _ = load.post(port, {"question": "创新券用于购买什么？"}, 30)
        stop.set()
        asker.join(timeout=60)
        assert status == 200 and data["citations"][0]["label"] == "《某园区细则》第二条"
        assert data["retrieved"][0]["scores"]["dense"] is not None  # the new collection, read across processes
        assert answers and all(s == 200 and DENSE_UNAVAILABLE not in w for s, w in answers), answers
        log = (tmp_path / "server.log").read_text()
        assert "switched from index" in log
    finally:
        stop.set()
        load.stop_server(proc)


def test_a_question_is_embedded_while_another_request_holds_the_search_lock(tiny_settings):
    """The e5 pass (~50 ms, GIL released) runs outside the assistant's lock, so concurrent
    requests embed on both cores instead of queueing behind one another's search."""
    import time

    assistant = Assistant(tiny_settings)
    queries = assistant.searcher.embedder._queries
    question = "Which rules apply to standard land supply in the zones (lock test)?"
    answers: list = []
    with assistant.live.lock:  # another request is searching
        t = threading.Thread(target=lambda: answers.append(assistant.ask(question)), daemon=True)
        t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("lock test" in q for q in list(queries)):
            time.sleep(0.01)
        assert any("lock test" in q for q in list(queries)), "the question was not embedded before the lock"
        assert not answers  # the search itself still waits for the lock
    t.join(timeout=60)
    assert answers and answers[0].retrieved
