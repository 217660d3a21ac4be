"""The `rag` command line. Errors of the RagError family become one line that says
what to do; everything else is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from rag.errors import ConfigError, RagError
from rag.settings import ENV_DOC, Settings, from_env

log = logging.getLogger("rag")


def _settings(args: argparse.Namespace) -> Settings:
    return from_env(k=getattr(args, "k", None), mode=getattr(args, "mode", None))


def _out(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def cmd_ingest(args: argparse.Namespace) -> int:
    from rag.index.ingest import ingest

    summary = ingest(_settings(args), add_paths=args.paths, rebuild=args.rebuild, progress=not args.quiet)
    for line in summary.lines():
        print(line, file=sys.stderr if line.startswith(("warning", "skipped")) else sys.stdout)
    return 0


def cmd_vectors_export(args: argparse.Namespace) -> int:
    import time

    from rag.index.ingest import export_bundled_vectors
    from rag.index.vectors import embedder_version

    s = _settings(args)
    if embedder_version(s.embedder) is None:
        raise RagError(f"vectors of the embedder {s.embedder!r} are not shipped",
                       hint="unset RAG_EMBEDDER (e5-small) to export the shipped vectors")
    started = time.perf_counter()
    summary = export_bundled_vectors(s, progress=not args.quiet)
    print(f"{summary.vectors} vectors in {len(summary.written) + summary.unchanged} files under "
          f"{s.vectors_dir}: {len(summary.written)} written, {summary.unchanged} unchanged, "
          f"{len(summary.removed)} removed; {summary.bytes / 1e6:.1f} MB; "
          f"{time.perf_counter() - started:.1f} s")
    return 0


def cmd_corpus_list(args: argparse.Namespace) -> int:
    from rag.qa.assistant import load_assistant

    docs = load_assistant(_settings(args)).documents()
    rows = [{"doc_id": d.doc_id, "title": d.title, "short_title": d.short_title, "type": d.doc_type,
             "issuer": d.issuer, "date": d.date, "status": d.status, "chunk_count": d.chunk_count,
             "clause_count": d.clause_count, "effective_date": d.effective_date,
             "version_date": d.date, "english_title": d.english_title,
             "parts": d.part_count, "measures": d.measure_count, "hooked_clauses": d.hooked_clauses}
            for d in docs]
    if args.json:
        _out(rows)
    else:
        for r in rows:
            print(f"{r['doc_id']:<28} {r['status']:<5} {r['date']:<10} {r['clause_count']:>5} clauses  "
                  f"hooks {r['hooked_clauses']:>4}/{r['clause_count']:<4}  {r['title']}")
    return 0


def cmd_corpus_show(args: argparse.Namespace) -> int:
    from rag.qa.assistant import load_assistant

    hits = load_assistant(_settings(args)).find(args.label)
    if not hits:
        raise RagError(f"no clause or document {args.label!r}",
                       hint="try a label such as 《工作方案》（十三） or 外商投资法第二十一条, or see `rag corpus list`")
    if args.json:
        _out([{"label": c.label, "text": c.text, **c.metadata()} for c in hits])
    else:
        for c in hits:
            print(f"{c.label}  [{c.status} · {c.date} · {c.section_path}]\n{c.text}\n")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from rag.corpus.normalize import NORMALIZER_VERSION
    from rag.index import store
    from rag.index.embed import get_embedder

    s = _settings(args)
    checks: list[tuple[str, bool, str]] = [
        ("as-of", True, f"{s.as_of_date}: versions in force on this date (RAG_AS_OF)")]
    try:
        emb = get_embedder(s.embedder)
        vec = emb.embed_query("经开区")
        checks.append(("embedder", True, f"{s.embedder} loads offline, dim {len(vec)}"))
    except RagError as exc:
        checks.append(("embedder", False, str(exc)))
    try:
        client = store.make_client(s.data_dir, s.chroma_url)
        info = store.require_index(client, s.embedder, NORMALIZER_VERSION)
        chunks, _ = store.read_chunks(client, info)
        docs = store.read_documents(client, info)
        consistent = len(chunks) == info.chunks and len(docs) == info.documents
        checks.append(("index", consistent, f"build {info.build}: {len(docs)} documents, {len(chunks)} chunks"
                       + ("" if consistent else f" (expected {info.documents}/{info.chunks}: rebuild)")))
        lex = (s.data_dir / "lexical" / info.build).exists()
        checks.append(("lexical", True, "bm25 index present" if lex else "bm25 index will be rebuilt on load"))
        checks.append(_hooks_check(s, chunks))
    except RagError as exc:
        checks.append(("index", False, str(exc)))
    cache_problem = _cache_problem(s.cache_dir / "embeddings.sqlite")
    if cache_problem:
        checks.append(("cache", True, cache_problem))
    for name, ok, msg in checks:
        print(f"{('warn' if name == 'cache' else 'ok  ') if ok else 'FAIL'} {name}: {msg}")
    return 0 if all(ok for _, ok, _ in checks) else 1


def _hooks_check(s: Settings, chunks: list) -> tuple[str, bool, str]:
    """Question hooks: how many clauses have them, and which entries are stale or missing."""
    from rag.index.clauses import ClauseTable
    from rag.index.ingest import match_hooks

    clauses = ClauseTable(chunks).clauses
    match = match_hooks(s, chunks)
    missing = match.missing(clauses)
    lines = [f"{len(match.by_clause)}/{len(clauses)} clauses have question hooks, "
             f"{len(match.stale)} stale entries, {len(missing)} clauses without hooks"]
    lines += [f"  stale: {e.source} {e.label} — the clause changed; rewrite the entry" for e in match.stale[:20]]
    by_doc: dict[str, int] = {}
    for key in clauses:
        if key not in match.by_clause:
            by_doc[key[0]] = by_doc.get(key[0], 0) + 1
    lines += [f"  missing: {doc}: {n} clauses" for doc, n in sorted(by_doc.items())]
    if by_doc:
        lines.append("  (bundled documents: add entries to corpus/hooks/<doc_id>.jsonl; "
                     "documents you added: `rag enrich DOC_ID` with an LLM configured)")
    return ("hooks", not match.stale, "\n".join(lines))


def cmd_enrich(args: argparse.Namespace) -> int:
    from rag.corpus.enrich import enrich, require_model
    from rag.index.ingest import ingest
    from rag.qa.assistant import load_assistant

    s = _settings(args)
    model = require_model(s)
    a = load_assistant(s)
    docs = a.documents()
    wanted = args.docs or [d.doc_id for d in docs if d.hooked_clauses == 0]  # the bundled have hooks
    known = {d.doc_id for d in docs}
    unknown = [d for d in wanted if d not in known]
    if unknown:
        raise RagError(f"unknown document {unknown[0]!r}", hint="see `rag corpus list` for doc_ids")
    summary = enrich(model, {d: a.clauses(d) for d in wanted}, s.data_dir / "hooks", progress=not args.quiet)
    for line in summary.lines():
        print(line)
    for line in ingest(s, progress=not args.quiet).lines():
        print(line)
    return 0 if not summary.failed else 1


def _cache_problem(path: Path) -> str:
    """A damaged embedding cache costs time, not answers: reported, not failed."""
    import sqlite3

    if not path.exists():
        return ""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            con.execute("SELECT count(*) FROM emb").fetchone()
        finally:
            con.close()
    except sqlite3.Error as exc:
        return (f"embedding cache {path} is unreadable ({exc}) — the next `rag ingest` sets it aside "
                "and re-embeds (minutes with e5); or delete it")
    return ""


def cmd_ask(args: argparse.Namespace) -> int:
    from rag.index.clauses import Filters
    from rag.qa.assistant import load_assistant

    assistant = load_assistant(_settings(args))
    filters = Filters(doc_ids=tuple(args.doc or ()), in_force_only=not args.all_status)
    result = assistant.ask(args.question, k=args.k, mode=args.mode, filters=filters)
    if args.json:
        _out(result.to_dict())
    else:
        print(result.answer)
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from rag.models import AskResult
    from rag.qa.assistant import load_assistant

    assistant = load_assistant(_settings(args))
    history: list[dict[str, str]] = []
    last: AskResult | None = None
    print("Ask about the ETDZ work plan and related laws. /sources shows the last sources, /quit ends.")
    while True:
        try:
            question = input("\n> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not question:
            continue
        if question in ("/quit", "/exit"):
            return 0
        if question == "/sources":
            if not last or not last.citations:
                print("(no sources yet)")
            for c in last.citations if last else []:
                print(f"[{c.n}] {c.label} — {c.doc_title} — {c.status}\n{c.text}\n")
            continue
        streamed = ""
        try:
            for piece in assistant.ask_stream(question, history=history, k=args.k, mode=args.mode):
                if isinstance(piece, AskResult):
                    last = piece
                else:
                    streamed += piece
                    print(piece, end="", flush=True)
        except RagError as exc:
            print(f"error: {exc}")
            continue
        if last and last.answer.strip() != streamed.strip():
            # llm mode streams only checked sentences; the sources, or the extractive
            # answer that replaced a failed reply, come with the result.
            rest = last.answer[len(streamed):] if last.answer.startswith(streamed) else last.answer
            print(("\n" if streamed else "") + rest.strip("\n"), end="")
        print()
        for warning in last.warnings if last else []:
            print(f"warning: {warning}")
        history += [{"role": "user", "content": question},
                    {"role": "assistant", "content": last.answer if last else ""}]


def cmd_eval_compare(args: argparse.Namespace) -> int:
    from rag.bench.compare import compare_reports, load_report, render_comparison

    if len(args.action) != 3:
        raise RagError("rag eval compare needs two reports",
                       hint="rag eval compare A/report.json B/report.json [--a CONFIG --b CONFIG]")
    _, path_a, path_b = args.action
    result = compare_reports(load_report(path_a), load_report(path_b), config_a=args.a,
                             config_b=args.b, path_a=path_a, path_b=path_b)
    if args.json:
        _out(result)
    else:
        print(render_comparison(result), end="")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from rag.bench.evaluate import run_benchmark
    from rag.bench.report import check_thresholds, format_table, write_reports
    from rag.qa.assistant import load_assistant
    from rag.settings import REPO_ROOT

    if args.action:
        if args.action[0] != "compare":
            raise RagError(f"unknown eval action {args.action[0]!r}",
                           hint="rag eval [options], or rag eval compare A/report.json B/report.json")
        return cmd_eval_compare(args)
    s = _settings(args)
    datasets = args.dataset or [str(REPO_ROOT / "eval" / "dev.jsonl")]
    assistant = load_assistant(s)
    dumped: dict[str, list] = {}
    report = run_benchmark(assistant, datasets, configs=args.config or None, k=args.k or 5,
                           data_dir=s.data_dir, answers=args.answers or (),
                           on_output=(lambda name, item, out: dumped.setdefault(name, []).append(
                               (item.id, out))) if args.dump_answers else None)
    if args.dump_answers or args.trec:
        from rag.bench.judgments import EvalIndex

        index = EvalIndex.from_assistant(assistant)
    if args.dump_answers:
        from rag.bench.external import answer_line, write_answers

        name = report["default_config"] if report["default_config"] in dumped else next(iter(dumped))
        path = write_answers([answer_line(i, out, index) for i, out in dumped[name]], args.dump_answers)
        print(f"wrote {name} answers to {path}", file=sys.stderr)
    if args.trec:
        from rag.bench.evaluate import load_dataset
        from rag.bench.trec import write_trec

        trec_paths = write_trec(report, load_dataset(datasets), index, args.trec)
        print("wrote " + ", ".join(str(p) for p in trec_paths), file=sys.stderr)
    if args.out:
        paths = write_reports(report, Path(args.out))
        print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    if args.json:
        _out(report)
    else:
        print(format_table(report))
    mins = {}
    for item in args.min or []:
        metric, _, value = item.partition("=")
        try:
            mins[metric] = float(value)
        except ValueError as exc:
            raise RagError(f"--min {item!r} is not METRIC=VALUE", hint="e.g. --min hit@1=0.8") from exc
    failures = check_thresholds(report, mins)
    for f in failures:
        print(f"below threshold: {f}", file=sys.stderr)
    return 1 if failures else 0


def cmd_serve(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # The web app is the ui package's: reached through its entry point, never imported here.
    found = entry_points(group="rag.web", name="serve")
    if not found:
        raise ConfigError("the web app is not installed", hint="run `pip install -e .` (or `make run`)")
    serve = next(iter(found)).load()
    serve(_settings(args), host=args.host, port=args.port, allow_upload=args.allow_upload,
          allow_benchmark=args.allow_benchmark, insecure=args.insecure)
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from rag.feedback import FILE, FeedbackStore

    s = _settings(args)
    if not (s.data_dir / FILE).exists():
        raise RagError(f"no feedback in {s.data_dir}", hint="feedback comes from `rag serve` (👍/👎, POST /api/feedback)")
    store = FeedbackStore(s.data_dir, s.feedback_max)
    if args.feedback_action == "list":
        rows = store.rows("down" if args.down else None)
        if args.json:
            print(json.dumps([r.to_dict() for r in rows], ensure_ascii=False, indent=1))
        for r in [] if args.json else rows:
            fix = f" → {r.correct_label}" if r.correct_label else ""
            print(f"#{r.id} {r.created} {'👍' if r.verdict == 'up' else '👎'} {r.question}{fix}"
                  + (f" — {r.comment}" if r.comment else ""))
        return 0
    from rag.bench.feedback_items import feedback_items
    from rag.qa.assistant import load_assistant

    items, skipped = feedback_items(store.rows("down"), load_assistant(s).find)
    with open(args.eval, "w", encoding="utf-8") as out:
        out.writelines(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    for reason in skipped:
        print(f"skipped: {reason}", file=sys.stderr)
    print(f"{len(items)} benchmark items written to {args.eval} "
          f"(run them with `rag eval --dataset {args.eval}`)")
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    from rag.mcp_server import main as serve_mcp

    serve_mcp(_settings(args), http=args.http, host=args.host, port=args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    env_help = "\n".join(f"  {k:<28} {v}" for k, v in ENV_DOC.items())
    p = argparse.ArgumentParser(prog="rag", description="Clause-cited Q&A over the ETDZ work plan and related laws.",
                                epilog="environment:\n" + env_help, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ingest", help="build or update the index (corpus/ plus PATHs you add)")
    s.add_argument("paths", nargs="*", help="files or folders to add (.txt .md .docx .pdf .html)")
    s.add_argument("--rebuild", action="store_true", help="rebuild even when nothing changed")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_ingest)

    v = sub.add_parser("vectors", help="the shipped vectors of the bundled corpus")
    vsub = v.add_subparsers(dest="vectors_command", required=True)
    ve = vsub.add_parser("export", help="regenerate corpus/vectors/ (rewrites only changed files)")
    ve.add_argument("--quiet", action="store_true", help="no progress bar")
    ve.set_defaults(func=cmd_vectors_export)

    c = sub.add_parser("corpus", help="list documents or show a clause")
    csub = c.add_subparsers(dest="corpus_command", required=True)
    cl = csub.add_parser("list", help="one entry per document")
    cl.add_argument("--json", action="store_true")
    cl.set_defaults(func=cmd_corpus_list)
    cs = csub.add_parser("show", help="a clause by label (《工作方案》（十三）, 外商投资法第二十一条) or a doc_id")
    cs.add_argument("label")
    cs.add_argument("--json", action="store_true")
    cs.set_defaults(func=cmd_corpus_show)

    d = sub.add_parser("doctor", help="check the embedder and the index")
    d.set_defaults(func=cmd_doctor)

    en = sub.add_parser("enrich", help="write question hooks for added documents with the LLM (RAG_LLM)")
    en.add_argument("docs", nargs="*", metavar="DOC_ID", help="documents (default: those without hooks)")
    en.add_argument("--quiet", action="store_true")
    en.set_defaults(func=cmd_enrich)
    a = sub.add_parser("ask", help="answer one question with clause citations")
    a.add_argument("question")
    a.add_argument("--json", action="store_true", help="print the answer object (a public contract)")
    a.add_argument("--k", type=int, default=None)
    a.add_argument("--mode", choices=["extractive", "llm"], default=None)
    a.add_argument("--doc", action="append", help="restrict to a doc_id (repeatable)")
    a.add_argument("--all-status", action="store_true", help="include documents no longer in force")
    a.set_defaults(func=cmd_ask)

    ch = sub.add_parser("chat", help="a terminal conversation")
    ch.add_argument("--k", type=int, default=None)
    ch.add_argument("--mode", choices=["extractive", "llm"], default=None)
    ch.set_defaults(func=cmd_chat)

    e = sub.add_parser("eval", help="run the QA accuracy benchmark")
    e.add_argument("--dataset", action="append", help="JSONL dataset (repeatable; default eval/dev.jsonl)")
    e.add_argument("--config", action="append", help="naive, bm25, dense, hybrid, hybrid+rerank, llm")
    e.add_argument("--k", type=int, default=5)
    e.add_argument("--out", help="write report.md, report.json and chart.png here")
    e.add_argument("--json", action="store_true")
    e.add_argument("--min", action="append", metavar="METRIC=VALUE", help="fail when hybrid is below")
    e.add_argument("action", nargs="*", metavar="compare A B",
                   help="compare two report.json files: deltas with intervals, flipped items")
    e.add_argument("--a", help="compare: configuration of report A (default: its default)")
    e.add_argument("--b", help="compare: configuration of report B (default: its default)")
    e.add_argument("--answers", action="append", metavar="FILE.jsonl",
                   help="score another system's answers beside the configurations (repeatable)")
    e.add_argument("--dump-answers", metavar="FILE.jsonl",
                   help="write the default configuration's answers in the --answers format")
    e.add_argument("--trec", metavar="DIR", help="write qrels.txt and run-<config>.txt (TREC)")
    e.set_defaults(func=cmd_eval)

    sv = sub.add_parser("serve", help="start the web assistant")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=7860)
    sv.add_argument("--allow-upload", action="store_true", help="let users add documents from the browser")
    sv.add_argument("--allow-benchmark", action="store_true", help="show the button that runs the dev benchmark")
    sv.add_argument("--insecure", action="store_true",
                    help="serve on a non-loopback --host without RAG_AUTH_TOKEN (trusted networks only)")
    sv.set_defaults(func=cmd_serve)
    _add_mcp_parser(sub)
    _add_feedback_parser(sub)
    return p


def _add_feedback_parser(sub: Any) -> None:
    f = sub.add_parser("feedback", help="users' 👍/👎 on answers; corrections as benchmark items")
    fsub = f.add_subparsers(dest="feedback_action", required=True)
    fl = fsub.add_parser("list", help="one line per feedback, oldest first")
    fl.add_argument("--down", action="store_true", help="only 👎")
    fl.add_argument("--json", action="store_true")
    fe = fsub.add_parser("export", help="the corrections (👎 with the right clause) as benchmark items")
    fe.add_argument("--eval", required=True, metavar="FILE.jsonl", help="write the items here (eval/README.md format)")
    f.set_defaults(func=cmd_feedback)


def _add_mcp_parser(sub: Any) -> None:
    m = sub.add_parser("mcp", help="serve the assistant to MCP clients (stdio, or --http)")
    m.add_argument("--http", action="store_true", help="streamable HTTP at http://HOST:PORT/mcp instead of stdio")
    m.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (default), localhost or ::1")
    m.add_argument("--port", type=int, default=8765)
    m.set_defaults(func=cmd_mcp)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except RagError as exc:
        print(f"error: {exc.message}" + (f" — {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Builds switch in one step and vectors are cached as they arrive: nothing is lost.
        print("interrupted: the index in use is unchanged; vectors computed so far are cached",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
