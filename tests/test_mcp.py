"""The MCP server (`rag mcp`, rag/mcp_server.py) as a client sees it: the SDK's own stdio client
starts the server as a subprocess over the tiny index, lists the tools and calls them; bad calls
are tool errors with a hint and the server goes on answering. The HTTP mode: a token when
RAG_AUTH_TOKEN is set, and loopback addresses only."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from rag.cli import main as cli_main
from rag.errors import ConfigError
from rag.settings import REPO_ROOT, Settings

TOOLS = {"ask", "lookup_clause", "search", "list_documents"}
TIMEOUT = 60  # seconds for one request, the first loading the index; a hung server fails


def server_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {"RAG_DATA_DIR": str(settings.data_dir), "RAG_CORPUS_DIR": str(settings.corpus_dir),
            "RAG_CACHE_DIR": str(settings.cache_dir), "RAG_EMBEDDER": settings.embedder,
            "HF_HUB_OFFLINE": "1", **extra}


def run_session(settings: Settings, log: Path, args: list[str], body: Any) -> None:
    """Start `python <args>` as a stdio MCP server and run `body(session)` against it."""
    params = StdioServerParameters(command=sys.executable, args=args, env=server_env(settings), cwd=REPO_ROOT)

    async def go() -> None:
        with anyio.fail_after(3 * TIMEOUT), log.open("w", encoding="utf-8") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), \
                    ClientSession(read, write, read_timeout_seconds=TIMEOUT) as session:
                init = await session.initialize()
                assert init.server_info.name == "etdz-rag"
                await body(session)

    try:
        anyio.run(go)
    finally:
        print(f"--- server stderr ({log}):\n{log.read_text(encoding='utf-8') if log.exists() else ''}")


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured result of a successful call, checked against its text twin."""
    text = result.content[0].text if result.content and result.content[0].type == "text" else ""
    assert not result.is_error, text
    assert isinstance(result.structured_content, dict)
    assert json.loads(text) == result.structured_content
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    assert result.is_error, f"expected a tool error, got {result.structured_content}"
    assert result.content and result.content[0].type == "text"
    return result.content[0].text


def test_the_tools_are_listed_with_their_schemas_and_answer_from_the_index(tiny_settings, tmp_path):
    async def body(session: ClientSession) -> None:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) == TOOLS
        ask = tools["ask"].input_schema
        assert ask["required"] == ["question"] and set(ask["properties"]) == {"question", "filters"}
        assert ask["properties"]["question"]["type"] == "string"
        assert ask["properties"]["question"]["maxLength"] == 2000
        search = tools["search"].input_schema
        assert search["required"] == ["question"]
        assert search["properties"]["k"] == {**search["properties"]["k"], "type": "integer", "default": 5,
                                             "minimum": 1, "maximum": 20}
        assert tools["lookup_clause"].input_schema["required"] == ["label"]
        assert tools["list_documents"].input_schema["properties"] == {}
        for t in tools.values():
            assert t.description and t.output_schema and t.annotations and t.annotations.read_only_hint

        answer = ok(await session.call_tool("ask", {"question": "M0用地能建住宅吗？"}))
        assert not answer["abstained"]
        assert answer["citations"][0]["label"] == "《工作方案》（十三）"
        first = answer["citations"][0]
        assert "[1]" in answer["answer"] and first["status"] == "现行有效" and first["date"] == "2025-05-21"
        assert any("M0" in q for q in first["quotes"]) and "“打擦边球”开发住宅" in first["text"]

        clause = ok(await session.call_tool("lookup_clause", {"label": "外商投资法第二十一条"}))
        assert clause["label"] == "《外商投资法》第二十一条"
        assert clause["text"].startswith("第二十一条 外国投资者在中国境内的出资、利润")
        assert "自由汇入、汇出" in clause["text"]
        assert (clause["doc_id"], clause["status"], clause["date"]) == ("外商投资法", "现行有效", "2019-03-15")
        assert clause["section_path"] == "第三章 投资保护 > 第二十一条"
        assert clause["other_version"] is None and isinstance(clause["see_also"], list)
        english = ok(await session.call_tool("lookup_clause", {"label": "Article 21 of the Foreign Investment Law"}))
        assert english["label"] == "《外商投资法》第二十一条"
        measure = ok(await session.call_tool("lookup_clause", {"label": "《工作方案》（十三）"}))
        assert measure["section_path"].startswith("五、强化要素保障") and "新型产业用地（M0）" in measure["text"]

        found = ok(await session.call_tool("search", {"question": "跨境电商", "k": 3}))
        results = found["results"]
        assert [r["rank"] for r in results] == [1, 2, 3]
        assert "跨境电商" in results[0]["text"] and results[0]["label"].startswith("《工作方案》")
        assert results[0]["scores"]["bm25"] > 0 and results[0]["scores"]["fused"] >= results[1]["scores"]["fused"]

        docs = {d["doc_id"]: d for d in ok(await session.call_tool("list_documents", {}))["documents"]}
        assert set(docs) == {"etdz-work-plan-2025", "外商投资法", "土地管理法"}
        assert (docs["外商投资法"]["type"], docs["外商投资法"]["clause_count"]) == ("法律", 42)
        assert docs["etdz-work-plan-2025"]["short_title"] == "工作方案"

        # filters narrow the answer to one law
        law = ok(await session.call_tool("ask", {"question": "外国投资者的利润可以汇出吗？",
                                                 "filters": {"doc_ids": ["外商投资法"]}}))
        assert law["citations"] and {c["doc_id"] for c in law["citations"]} == {"外商投资法"}

    run_session(tiny_settings, tmp_path / "server.log", ["-m", "rag.mcp_server"], body)


def test_bad_calls_are_tool_errors_with_a_hint_and_the_server_goes_on(tiny_settings, tmp_path):
    async def body(session: ClientSession) -> None:
        async def fails(tool: str, args: dict[str, Any], *expected: str) -> None:
            text = error_text(await session.call_tool(tool, args))
            assert "Hint:" in text and all(e in text for e in expected), text
            assert "Traceback" not in text

        await fails("ask", {"question": ""}, "question is empty", "M0用地能建住宅吗？")
        await fails("ask", {"question": "  \n "}, "question is empty")
        await fails("ask", {"question": "经开区" * 700}, "longer than 2000 characters")
        await fails("ask", {"question": "M0\x00用地"}, "NUL character at position 2")
        await fails("search", {"question": "跨境电商", "k": 99}, "k=99 is out of range", "from 1 to 20")
        await fails("search", {"question": "跨境电商", "k": 0}, "k=0 is out of range")
        await fails("search", {"question": "\x07"}, "control character U+0007")
        await fails("lookup_clause", {"label": "外商投资法第九百条"}, "no clause", "try `search`", "外商投资法第二十一条")
        await fails("lookup_clause", {"label": "外商投资法"}, "is a document with 42 clauses", "《外商投资法》第一条")
        await fails("ask", {"question": "M0用地能建住宅吗？", "filters": {"doc_id": ["外商投资法"]}},
                    "unknown filter 'doc_id'", "doc_ids, doc_types, in_force_only")
        await fails("ask", {"question": "M0用地能建住宅吗？", "filters": {"doc_ids": ["no-such-law"]}},
                    "unknown document 'no-such-law'", "list_documents", "外商投资法")
        await fails("ask", {"question": "M0用地能建住宅吗？", "filters": {"in_force_only": "yes"}},
                    "in_force_only must be true or false")
        wrong_type = error_text(await session.call_tool("search", {"question": "跨境电商", "k": "many"}))
        assert "k" in wrong_type and "integer" in wrong_type
        assert error_text(await session.call_tool("no_such_tool", {}))

        # still answering, with the right clause
        answer = ok(await session.call_tool("ask", {"question": "M0用地能建住宅吗？"}))
        assert answer["citations"][0]["label"] == "《工作方案》（十三）"

    run_session(tiny_settings, tmp_path / "server.log", ["-m", "rag", "mcp"], body)


def test_without_an_index_the_tools_say_how_to_build_one_and_load_it_once_it_exists(tiny_settings, tmp_path):
    import shutil

    empty = replace(tiny_settings, data_dir=tmp_path / "data")

    async def body(session: ClientSession) -> None:
        assert {t.name for t in (await session.list_tools()).tools} == TOOLS  # listing loads nothing
        for tool, args in (("list_documents", {}), ("ask", {"question": "M0用地能建住宅吗？"})):
            text = error_text(await session.call_tool(tool, args))
            assert "no index has been built yet. Hint: run `rag ingest` first" in text, text
        shutil.copytree(tiny_settings.data_dir, empty.data_dir, dirs_exist_ok=True)  # as `rag ingest` would
        clause = ok(await session.call_tool("lookup_clause", {"label": "《工作方案》（十三）"}))
        assert clause["label"] == "《工作方案》（十三）"

    run_session(empty, tmp_path / "server.log", ["-m", "rag.mcp_server"], body)


# --------------------------------------------------------------------------- HTTP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_mode_needs_the_bearer_token_when_one_is_set(tiny_settings, tmp_path):
    token = "s3cret-token-for-tests"
    port = _free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    log = tmp_path / "http.log"
    with log.open("w", encoding="utf-8") as errlog:
        proc = subprocess.Popen([sys.executable, "-m", "rag", "mcp", "--http", "--port", str(port)],
                                env={**{k: v for k, v in os.environ.items() if not k.startswith("RAG_")},
                                     **server_env(tiny_settings, RAG_AUTH_TOKEN=token)},
                                cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=errlog)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert proc.poll() is None, log.read_text(encoding="utf-8")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the HTTP server did not start"
                time.sleep(0.1)
        hello = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            refused = httpx2.post(url, json=hello, headers=headers, timeout=10)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert "Authorization: Bearer" in refused.json()["hint"]

        async def go() -> dict[str, Any]:
            with anyio.fail_after(2 * TIMEOUT):
                async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT) as http, \
                        streamable_http_client(url, http_client=http) as (read, write), \
                        ClientSession(read, write, read_timeout_seconds=TIMEOUT) as session:
                    await session.initialize()
                    assert {t.name for t in (await session.list_tools()).tools} == TOOLS
                    return ok(await session.call_tool("lookup_clause", {"label": "外商投资法第二十一条"}))

        assert "自由汇入、汇出" in anyio.run(go)["text"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out = proc.stdout.read() if proc.stdout else b""
    assert out == b"", "HTTP mode logs to stderr, never stdout"
    assert f"http://127.0.0.1:{port}/mcp (bearer token required)" in log.read_text(encoding="utf-8")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.org"])
def test_http_mode_refuses_a_non_loopback_host_before_serving(host, tmp_path, monkeypatch, capsys):
    import uvicorn

    from rag.mcp_server import main

    def serve(self: Any) -> None:
        raise AssertionError(f"served on {self.config.host}")

    monkeypatch.setattr(uvicorn.Server, "run", serve)  # a refusal that fails does not hang the test
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "no-index"))
    with pytest.raises(ConfigError) as err:
        main(Settings(data_dir=tmp_path / "no-index"), http=True, host=host, port=_free_port())
    assert host in err.value.message and "127.0.0.1" in err.value.hint
    assert cli_main(["mcp", "--http", "--host", host]) == 2
    assert capsys.readouterr().err.startswith("error: rag mcp --http serves on 127.0.0.1")
    assert not (tmp_path / "no-index").exists()
