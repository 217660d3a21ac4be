"""The assistant as an MCP server (`rag mcp`): tools an MCP client (Claude Desktop, an IDE, an
agent) calls to ask questions, look clauses up, search and list the corpus.

stdio by default (the client starts `rag mcp` and speaks over its stdin/stdout, so nothing else
may write to stdout: logs go to stderr), or streamable HTTP on a loopback address with
`--http`, behind `Authorization: Bearer <RAG_AUTH_TOKEN>` when that token is set.

Bad input and RagErrors come back as tool errors (isError) whose text says what to do; the
server goes on answering. The assistant is loaded on the first call that needs it, once.
"""

from __future__ import annotations

import argparse
import hmac
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from rag.corpus.normalize import unusable_character
from rag.errors import ConfigError, RagError
from rag.settings import Settings, from_env

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from rag.qa.assistant import Assistant

log = logging.getLogger("rag.mcp_server")  # also when run as __main__

# The limits of the JSON API (ui/api.py), which the core may not import.
MAX_QUESTION_CHARS = 2000
MAX_LABEL_CHARS = 200
K_RANGE = (1, 20)
DEFAULT_PORT = 8765
LABEL_EXAMPLE = "外商投资法第二十一条"


# --------------------------------------------------------------------------- results


class CitationOut(BaseModel):
    n: int = Field(description="the [n] marker in the answer")
    label: str = Field(description="the clause, e.g. 《工作方案》（十三）")
    doc_id: str
    doc_title: str
    status: str = Field(description="现行有效, 尚未生效, 已废止 ...")
    date: str = Field(description="version date of the document, YYYY-MM-DD")
    section_path: str
    quotes: list[str] = Field(description="the sentences of the clause the answer uses")
    text: str = Field(description="the whole clause")
    see_also: list[str] = Field(description="labels of linked clauses")
    other_version: dict[str, str] | None = Field(
        description="the same clause in a version adopted but not yet in force")


class AskOut(BaseModel):
    question: str
    answer: str = Field(description="answer text with [n] citation markers")
    abstained: bool = Field(description="true when the corpus does not answer the question")
    citations: list[CitationOut]
    related: list[str] = Field(description="labels of related clauses, listed when abstaining")
    warnings: list[str] = Field(description="e.g. a cited law that is no longer in force")


class ClauseOut(BaseModel):
    label: str
    text: str
    doc_id: str
    doc_title: str
    short_title: str
    doc_type: str
    status: str
    date: str = Field(description="version date of the document, YYYY-MM-DD")
    effective_date: str
    section_path: str
    see_also: list[str] = Field(description="labels of linked clauses (implementing rules, references)")
    other_version: dict[str, str] | None = Field(
        description="the same clause in a version adopted but not yet in force")


class SearchHit(BaseModel):
    rank: int
    label: str
    doc_id: str
    doc_title: str
    status: str
    section_path: str
    scores: dict[str, float | None] = Field(
        description="each retriever's raw score (bm25, dense, ...; null: not found by it) and fused")
    text: str


class SearchOut(BaseModel):
    question: str
    results: list[SearchHit]


class DocumentOut(BaseModel):
    doc_id: str
    title: str
    short_title: str
    type: str = Field(description="政策文件, 法律, 行政法规 ...")
    issuer: str
    status: str
    date: str = Field(description="version date, YYYY-MM-DD")
    effective_date: str
    clause_count: int


class DocumentsOut(BaseModel):
    documents: list[DocumentOut]


# --------------------------------------------------------------------------- input


def tool_error(message: str, hint: str = "") -> ToolError:
    """What the client reads: the problem, then what to do about it."""
    return ToolError(f"{message}. Hint: {hint}" if hint else message)


def check_text(name: str, text: str, limit: int, example: str) -> str:
    """The stripped text, or a tool error for empty, over-long, or control-character text."""
    if not text.strip():
        raise tool_error(f"{name} is empty", f"send a {name}, e.g. {example}")
    if len(text) > limit:
        raise tool_error(f"{name} is longer than {limit} characters ({len(text)})", f"send a shorter {name}")
    problem, hint = unusable_character(text)
    if problem:
        raise tool_error(f"{name} {problem}", hint)
    return text.strip()


def check_k(k: int) -> int:
    if not K_RANGE[0] <= k <= K_RANGE[1]:
        raise tool_error(f"k={k!r} is out of range",
                         f"k is the number of clauses to return: an integer from {K_RANGE[0]} to {K_RANGE[1]}, e.g. 5")
    return k


def check_filters(filters: dict[str, Any] | None, known_docs: dict[str, str]) -> Any:
    """Filters for Assistant.ask, or a tool error that says what to send."""
    from rag.index.clauses import filters_from

    try:
        return filters_from(filters, known_docs, docs_hint="call `list_documents` for the doc_ids; ")
    except ConfigError as exc:
        raise tool_error(exc.message, exc.hint) from exc


def _filters_schema(schema: dict[str, Any]) -> None:
    """Name the filter keys in the input schema (unknown keys still reach check_filters, whose
    error says what to send)."""
    for option in schema.get("anyOf", []):
        if option.get("type") == "object":
            option["properties"] = {
                "doc_ids": {"type": "array", "items": {"type": "string"},
                            "description": "only these documents (doc_id from list_documents)"},
                "doc_types": {"type": "array", "items": {"type": "string"},
                              "description": "only these types: 政策文件, 法律, 行政法规 ..."},
                "in_force_only": {"type": "boolean", "default": True,
                                  "description": "leave out documents no longer in force"}}


# --------------------------------------------------------------------------- the server


@contextmanager
def rag_errors(tool: str) -> Iterator[None]:
    """RagErrors become tool errors with their hint. Anything else is a bug, which the SDK logs
    with its traceback (stderr) and reports to the client as a failed call."""
    try:
        yield
    except RagError as exc:
        log.warning("%s failed: %s", tool, exc)
        raise tool_error(exc.message, exc.hint) from exc


def _citation(c: Any) -> CitationOut:
    return CitationOut(n=c.n, label=c.label, doc_id=c.doc_id, doc_title=c.doc_title, status=c.status,
                       date=c.date, section_path=c.section_path, quotes=list(c.quotes), text=c.text,
                       see_also=list(c.see_also), other_version=c.other_version)


QuestionArg = Annotated[str, Field(description="the question, in Chinese or English, e.g. M0用地能建住宅吗？",
                                   json_schema_extra={"minLength": 1, "maxLength": MAX_QUESTION_CHARS})]
FiltersArg = Annotated[dict[str, Any] | None, Field(
    description='optional: {"doc_ids": [...], "doc_types": [...], "in_force_only": true}; '
                "doc_ids and types come from list_documents", json_schema_extra=_filters_schema)]
LabelArg = Annotated[str, Field(
    description="a clause label: 外商投资法第二十一条, 《工作方案》（十三）, or 'Article 21 of the Foreign Investment Law'",
    json_schema_extra={"minLength": 1, "maxLength": MAX_LABEL_CHARS})]
KArg = Annotated[int, Field(description="number of clauses to return",
                            json_schema_extra={"minimum": K_RANGE[0], "maximum": K_RANGE[1]})]


class Tools:
    """The tools (their docstrings are what clients read). The assistant is loaded by the first
    call that needs it (listing the tools does not), once; a failed load (no index yet) is not
    kept, so the next call tries again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._assistant: Assistant | None = None

    def assistant(self) -> Assistant:
        with self._lock:
            if self._assistant is None:
                from rag.qa.assistant import load_assistant

                self._assistant = load_assistant(self.settings)
            return self._assistant

    def ask(self, question: QuestionArg, filters: FiltersArg = None) -> AskOut:
        """Answer a question from the corpus with clause citations: the answer text with [n]
        markers, whether it abstained (the corpus does not answer it), each cited clause (label,
        document, status, date, the quoted sentences and the whole clause) and warnings."""
        question = check_text("question", question, MAX_QUESTION_CHARS, "M0用地能建住宅吗？")
        with rag_errors("ask"):
            assistant = self.assistant()
            known = {d.doc_id: d.doc_type for d in assistant.documents()} if filters is not None else {}
            result = assistant.ask(question, filters=check_filters(filters, known))
        return AskOut(question=result.question, answer=result.answer, abstained=result.abstained,
                      citations=[_citation(c) for c in result.citations], related=list(result.related),
                      warnings=list(result.warnings))

    def lookup_clause(self, label: LabelArg) -> ClauseOut:
        """The text and metadata of one clause named by its label (a law article, a measure of
        the work plan): its document, status, version date, section path, linked clauses and the
        version not yet in force, if any."""
        label = check_text("label", label, MAX_LABEL_CHARS, LABEL_EXAMPLE)
        with rag_errors("lookup_clause"):
            current = self.assistant().live.current  # one build for the clause and its links
            hits = current.find(label)
        if not hits:
            raise tool_error(f"no clause {label!r} in the corpus",
                             f"try `search` or a label such as {LABEL_EXAMPLE} or 《工作方案》（十三）")
        if len(hits) > 1:
            raise tool_error(f"{label!r} is a document with {len(hits)} clauses, not one clause",
                             f"name one clause, e.g. {hits[0].label}, or use `search`")
        c = hits[0]
        return ClauseOut(label=c.label, text=c.text, doc_id=c.doc_id, doc_title=c.doc_title,
                         short_title=c.short_title, doc_type=c.doc_type, status=c.status, date=c.date,
                         effective_date=c.effective_date, section_path=c.section_path,
                         see_also=current.see_also(c), other_version=current.other_version(c))

    def search(self, question: QuestionArg, k: KArg = 5) -> SearchOut:
        """The clauses in force that best match a question, ranked, with each retriever's score
        (bm25, dense, fused) and the clause text: the evidence, without an answer."""
        question = check_text("question", question, MAX_QUESTION_CHARS, "跨境电商")
        k = check_k(k)
        with rag_errors("search"):
            hits = self.assistant().search(question, k=k)
        return SearchOut(question=question, results=[
            SearchHit(rank=h.rank, label=h.chunk.label, doc_id=h.chunk.doc_id, doc_title=h.chunk.doc_title,
                      status=h.chunk.status, section_path=h.chunk.section_path,
                      scores={**h.scores, "fused": h.fused}, text=h.chunk.text) for h in hits])

    def list_documents(self) -> DocumentsOut:
        """The documents of the corpus: doc_id (for ask's filters), title, short title, type,
        issuer, status, version date and number of clauses."""
        with rag_errors("list_documents"):
            docs = self.assistant().documents()
        return DocumentsOut(documents=[
            DocumentOut(doc_id=d.doc_id, title=d.title, short_title=d.short_title, type=d.doc_type,
                        issuer=d.issuer, status=d.status, date=d.date, effective_date=d.effective_date,
                        clause_count=d.clause_count) for d in docs])


READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                            open_world_hint=False)
INSTRUCTIONS = (
    "Clause-cited answers over China's 2025 ETDZ reform work plan (《工作方案》) and related Chinese "
    "laws and regulations. Use `ask` for a question (its answer cites clauses as [n]), `lookup_clause` "
    "for the text of a named clause (外商投资法第二十一条, 《工作方案》（十三）), `search` for the ranked "
    "clauses behind a question, `list_documents` for the corpus. Quote the clause labels when you use "
    "an answer.")


def build_server(settings: Settings) -> MCPServer:
    tools = Tools(settings)
    server: MCPServer = MCPServer("etdz-rag", title="ETDZ policy and Chinese law Q&A", version=_version(),
                                  instructions=INSTRUCTIONS, log_level="WARNING")
    for tool in (tools.ask, tools.lookup_clause, tools.search, tools.list_documents):
        server.add_tool(tool, annotations=READ_ONLY)
    return server


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("etdz-rag")
    except PackageNotFoundError:
        return ""


# --------------------------------------------------------------------------- HTTP


# The hosts for which the SDK turns on its DNS rebinding protection (Host and Origin checks).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class BearerAuth:
    """ASGI middleware: every HTTP request needs `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._ok(scope):
            from starlette.responses import JSONResponse

            response = JSONResponse({"error": "missing or wrong token",
                                     "hint": "send the header Authorization: Bearer <RAG_AUTH_TOKEN>"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _ok(self, scope: Scope) -> bool:
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        scheme, _, given = header.partition(" ")
        # compare_digest: the time taken does not tell how much of the token was right.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), self.token.encode("utf-8"))


def http_app(server: MCPServer, settings: Settings, host: str = "127.0.0.1") -> ASGIApp:
    """The streamable HTTP app at /mcp (the SDK checks Host and Origin against loopback),
    behind the bearer token when RAG_AUTH_TOKEN is set."""
    app: ASGIApp = server.streamable_http_app(host=host)
    return BearerAuth(app, settings.auth_token) if settings.auth_token else app


def main(settings: Settings, http: bool = False, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve over stdio, or with `http` over streamable HTTP at http://host:port/mcp."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")  # no-op when the CLI did it
    if http and host not in LOOPBACK_HOSTS:
        raise ConfigError(f"rag mcp --http serves on {', '.join(LOOPBACK_HOSTS)} only, not {host!r}",
                          hint="use --host 127.0.0.1 and reach it through an SSH tunnel or a reverse proxy")
    if http and not 0 < port < 65536:
        raise ConfigError(f"--port {port} is not a TCP port", hint=f"e.g. --port {DEFAULT_PORT}")
    server = build_server(settings)
    if not http:
        server.run("stdio")
        return
    import uvicorn

    app = http_app(server, settings, host)
    where = f"[{host}]" if ":" in host else host
    print(f"MCP over streamable HTTP at http://{where}:{port}/mcp ("
          + ("bearer token required" if settings.auth_token else "no token: set RAG_AUTH_TOKEN to require one")
          + ")", file=sys.stderr)
    # log_config=None: uvicorn's loggers go to the root handler (stderr), its access log too.
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None)).run()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rag.mcp_server", description="The assistant as an MCP server.")
    p.add_argument("--http", action="store_true", help="streamable HTTP at http://HOST:PORT/mcp instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (default), localhost or ::1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details (stderr)")
    return p.parse_args(argv)


if __name__ == "__main__":
    args = _parse(None)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        main(from_env(), http=args.http, host=args.host, port=args.port)
    except RagError as exc:
        print(f"error: {exc.message}" + (f" — {exc.hint}" if exc.hint else ""), file=sys.stderr)
        sys.exit(2)
