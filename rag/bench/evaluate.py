"""QA accuracy benchmark: dataset loading and validation, metrics, the runner.

The dataset format (JSON Lines) is a public contract, see `load_dataset`.
Metrics are pure functions over per-item records so they can be tested on
hand-made data; `run_benchmark` only gathers those records from the
configurations (naive, bm25, dense, hybrid, hybrid+rerank, llm) and
aggregates them into the JSON report that `rag.bench.report` renders.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rag.bench import external
from rag.bench.baseline import ConfigOutput, NaiveBaseline
from rag.bench.judgments import EvalIndex, kinds_in
from rag.bench.stats import LANGS, MRR_CUTOFF, TURN_KINDS, add_uncertainty, turn_groups
from rag.corpus.normalize import fold_for_match
from rag.errors import ConfigError, DatasetError, RagError

log = logging.getLogger(__name__)

ROLES = ("user", "assistant")
CONFIG_ORDER = ("naive", "bm25", "dense", "hybrid-nohooks", "hybrid+hooks-lex", "hybrid+hooks-dense",
                "hybrid-rrf", "hybrid", "hybrid+rerank", "llm")
DEFAULT_CONFIG = "hybrid"

# Folding runs opencc; retrieved chunks repeat across items and configurations.
_fold = lru_cache(maxsize=50_000)(fold_for_match)


# --------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class EvalItem:
    id: str
    question: str
    lang: str
    answerable: bool
    evidence: tuple[str, ...]
    answer_keywords: tuple[str, ...]
    category: str
    source: str = ""
    history: tuple[dict[str, str], ...] = ()
    turn: str = "single"  # single, or for an item with history: continuation / topic-switch / follow-up
    file: str = ""
    line: int = 0


def _dataset_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(paths, str | Path):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.jsonl")))
        elif p.is_file():
            files.append(p)
        else:
            raise DatasetError(f"dataset {p} does not exist", hint="pass JSON Lines files or a folder")
    if not files:
        raise DatasetError("no dataset files given", hint="pass eval/items/*.jsonl")
    return files


def _str_list(obj: dict[str, Any], name: str, fail: Callable[[str], DatasetError]) -> tuple[str, ...]:
    value = obj[name]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(f"'{name}' must be a list of strings")
    for v in value:
        # A snippet that folds to "" is a substring of every chunk: it would
        # make any retrieval count as a hit.
        if not fold_for_match(v):
            raise fail(f"'{name}' entry {v!r} has no letters or digits")
    return tuple(value)


def _parse_item(obj: Any, file: Path, line: int) -> EvalItem:
    def fail(what: str) -> DatasetError:
        return DatasetError(
            f"{file}:{line}: {what}",
            hint="see the dataset format in rag/bench/evaluate.py (load_dataset)",
        )

    if not isinstance(obj, dict):
        raise fail("a line must be a JSON object")
    for name in ("id", "question", "lang", "answerable", "evidence", "answer_keywords", "category"):
        if name not in obj:
            raise fail(f"missing field '{name}'")
    for name in ("id", "question", "category"):
        if not isinstance(obj[name], str) or not obj[name].strip():
            raise fail(f"'{name}' must be a non-empty string")
    if obj["lang"] not in LANGS:
        raise fail(f"'lang' must be 'zh' or 'en', not {obj['lang']!r}")
    if not isinstance(obj["answerable"], bool):
        raise fail("'answerable' must be true or false")
    evidence = _str_list(obj, "evidence", fail)
    keywords = _str_list(obj, "answer_keywords", fail)
    if obj["answerable"] and not evidence:
        raise fail("an answerable item needs at least one evidence snippet")
    if not obj["answerable"] and evidence:
        raise fail("an unanswerable item must have empty 'evidence'")
    # `source` is for humans and any JSON value; reports show a non-string as compact JSON.
    source = obj.get("source")
    if source is None:
        source = ""
    elif not isinstance(source, str):
        source = json.dumps(source, ensure_ascii=False, separators=(",", ":"))
    history = obj.get("history") or []
    if not isinstance(history, list) or not all(
        isinstance(t, dict) and t.get("role") in ROLES and isinstance(t.get("content"), str)
        for t in history
    ):
        raise fail("'history' must be a list of {\"role\": \"user\"|\"assistant\", \"content\": str}")
    kind = obj.get("turn_kind")
    if history and kind not in (None, "", *TURN_KINDS):
        raise fail(f"'turn_kind' must be one of {', '.join(TURN_KINDS)}, not {kind!r}")
    turn = (kind or "follow-up") if history else "single"
    return EvalItem(
        id=obj["id"], question=obj["question"], lang=obj["lang"], answerable=obj["answerable"],
        evidence=evidence, answer_keywords=keywords, category=obj["category"], source=source,
        history=tuple({"role": t["role"], "content": t["content"]} for t in history), turn=turn,
        file=str(file), line=line,
    )


def load_dataset(paths: str | Path | Iterable[str | Path]) -> list[EvalItem]:
    """Items from JSON Lines files (or folders of *.jsonl); unknown fields are ignored.

    Each non-blank line: id, question, lang ("zh"|"en"), answerable (bool),
    evidence (verbatim snippets; empty when not answerable), answer_keywords,
    category, optional source (any JSON value) and history. Ids must be unique across files.
    """
    items: list[EvalItem] = []
    seen: dict[str, str] = {}
    for file in _dataset_files(paths):
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"cannot read dataset {file}: {exc}", hint="save it as UTF-8") from exc
        for n, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DatasetError(
                    f"{file}:{n}: invalid JSON ({exc.msg} at column {exc.colno})",
                    hint="each line must be one complete JSON object",
                ) from exc
            item = _parse_item(obj, file, n)
            if item.id in seen:
                raise DatasetError(
                    f"{file}:{n}: duplicate id {item.id!r} (first at {seen[item.id]})",
                    hint="ids must be unique across all dataset files",
                )
            seen[item.id] = f"{file}:{n}"
            items.append(item)
    if not items:
        raise DatasetError("the datasets contain no items", hint="add JSON Lines items")
    return items


# --------------------------------------------------------------------------- metrics


def holds_evidence(text: str, snippets: Sequence[str]) -> bool:
    """True when one snippet, folded, is a substring of the folded text."""
    folded = _fold(text)
    return any(_fold(s) in folded for s in snippets)


def first_hit_rank(texts: Sequence[str], snippets: Sequence[str]) -> int | None:
    """1-based position of the first text holding the evidence, None if none does."""
    for rank, text in enumerate(texts, start=1):
        if holds_evidence(text, snippets):
            return rank
    return None


def find_unlocatable(items: Iterable[EvalItem], chunk_texts: Iterable[str]) -> list[str]:
    """Ids of answerable items whose evidence no chunk of the corpus holds."""
    # Folded text has no whitespace, so a newline-joined haystack never lets a
    # snippet match across two chunks.
    haystack = "\n".join(_fold(t) for t in chunk_texts)
    return [
        it.id for it in items
        if it.answerable and not any(_fold(s) in haystack for s in it.evidence)
    ]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def hit_at(ranks: Sequence[int | None], k: int) -> float | None:
    return _mean([1.0 if r is not None and r <= k else 0.0 for r in ranks])


def mrr(ranks: Sequence[int | None], cutoff: int = MRR_CUTOFF) -> float | None:
    return _mean([1.0 / r if r is not None and r <= cutoff else 0.0 for r in ranks])


def keyword_hits(answer: str, keywords: Sequence[str]) -> int:
    folded = _fold(answer)
    return sum(1 for kw in keywords if _fold(kw) in folded)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def abstention_scores(
    should: Sequence[bool], did: Sequence[bool]
) -> tuple[float | None, float | None, float | None]:
    """Precision, recall, F1 with "should abstain" as the positive class (None: undefined)."""
    tp = sum(1 for s, d in zip(should, did, strict=True) if s and d)
    fp = sum(1 for s, d in zip(should, did, strict=True) if not s and d)
    fn = sum(1 for s, d in zip(should, did, strict=True) if s and not d)
    return _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn)


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: always a latency that was actually observed."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def score_item(item: EvalItem, out: ConfigOutput, top: int = 5) -> dict[str, Any]:
    """The per-item record of the JSON report (plus counts that aggregation needs)."""
    record: dict[str, Any] = {
        "id": item.id, "lang": item.lang, "category": item.category, "turn": item.turn,
        "answerable": item.answerable, "hit_rank": None, "cited_ok": None,
        "keyword_recall": None, "abstained": out.abstained,
        "latency_ms": round(out.latency_ms, 1),
        "top_labels": [label for label, _ in out.retrieved[:top]],
        "question": item.question, "source": item.source,
        "n_cited": len(out.cited), "n_cited_ok": 0, "n_keywords": 0, "n_keywords_found": 0,
    }
    if out.error:
        record["error"] = out.error
    if item.answerable:
        record["hit_rank"] = first_hit_rank([t for _, t in out.retrieved], item.evidence)
        ok = [holds_evidence(t, item.evidence) for _, t in out.cited]
        record["n_cited_ok"] = sum(ok)
        record["cited_ok"] = any(ok)
        if item.answer_keywords:
            found = keyword_hits(out.answer, item.answer_keywords)
            record.update(n_keywords=len(item.answer_keywords), n_keywords_found=found)
            record["keyword_recall"] = found / len(item.answer_keywords)
    return record


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate per-item records (unlocatable items already removed) into metrics."""
    ans = [r for r in records if r["answerable"]]
    ranks = [r["hit_rank"] for r in ans]
    # Citation precision is micro-averaged over cited chunks of answerable
    # items that did answer; an abstention is judged by the abstention metrics.
    cited = [r for r in ans if not r["abstained"] and r["n_cited"] > 0]
    p, rc, f1 = abstention_scores(
        [not r["answerable"] for r in records], [bool(r["abstained"]) for r in records]
    )
    latencies = [r["latency_ms"] for r in records if r["latency_ms"] is not None]
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    return {
        "hit@1": hit_at(ranks, 1),
        "hit@3": hit_at(ranks, 3),
        "hit@5": hit_at(ranks, 5),
        "mrr@10": mrr(ranks, MRR_CUTOFF),
        "citation_precision": _ratio(
            sum(r["n_cited_ok"] for r in cited), sum(r["n_cited"] for r in cited)
        ),
        "citation_recall": _mean([1.0 if r["cited_ok"] else 0.0 for r in ans]),
        "keyword_recall": _ratio(
            sum(r["n_keywords_found"] for r in ans), sum(r["n_keywords"] for r in ans)
        ),
        "abstention_precision": p,
        "abstention_recall": rc,
        "abstention_f1": f1,
        "latency_p50_ms": None if p50 is None else round(p50, 1),
        "latency_p95_ms": None if p95 is None else round(p95, 1),
        "n": len(records),
        "n_answerable": len(ans),
        "n_unanswerable": len(records) - len(ans),
        "n_abstained": sum(1 for r in records if r["abstained"]),
        "n_errors": sum(1 for r in records if r.get("error")),
    }


def summarize_config(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    categories = sorted({r["category"] for r in records})
    return {
        "overall": summarize(records),
        "by_lang": {
            lang: summarize([r for r in records if r["lang"] == lang])
            for lang in LANGS if any(r["lang"] == lang for r in records)
        },
        "by_category": {
            c: summarize([r for r in records if r["category"] == c]) for c in categories
        },
        # notice / law / regulation / user-added: the document the evidence is in.
        "by_doc_kind": {
            kind: summarize([r for r in records if r.get("doc_kind") == kind])
            for kind in kinds_in(records)
        } if any("doc_kind" in r for r in records) else {},
        # single questions vs the last question of a conversation, by how it follows on.
        "by_turn": turn_groups(records, summarize),
        "items": list(records),
    }


# --------------------------------------------------------------------------- runner

Adapter = Callable[[EvalItem, int], ConfigOutput]


def available_configs(assistant: Any) -> list[str]:
    names = ["naive", "bm25", "dense", "hybrid-nohooks", "hybrid-rrf", "hybrid"]
    if assistant.reranker_available:
        names.append("hybrid+rerank")
    if assistant.llm_available:
        names.append("llm")
    return names


def _from_ask(assistant: Any, **options: Any) -> Adapter:
    def run(item: EvalItem, k: int) -> ConfigOutput:
        r = assistant.ask(item.question, history=list(item.history) or None, k=k, **options)
        return ConfigOutput(
            retrieved=[(s.chunk.label, s.chunk.text) for s in r.retrieved],
            cited=[(c.label, c.text) for c in r.citations],
            answer=r.answer,
            abstained=bool(r.abstained),
        )

    return run


def make_adapter(
    name: str, assistant: Any, data_dir: Path, note: Callable[[str], None] | None = None
) -> Adapter:
    if name == "naive":
        from rag.index.ingest import vectors_for_texts

        settings = getattr(assistant, "settings", None)
        baseline = NaiveBaseline(
            assistant.document_records(), assistant.embedder, data_dir,
            vectors_for=(lambda texts: vectors_for_texts(texts, settings, progress=note is not None)[0])
            if settings is not None else None)
        # Embed up front so the first question's latency is honest.
        baseline.matrix(
            progress=(lambda done, total: note(f"naive: embedding chunks {done}/{total}"))
            if note else None
        )
        # The tutorial pipeline has no follow-up resolution: history is ignored.
        return lambda item, k: baseline.answer(item.question, k)
    options: dict[str, dict[str, Any]] = {
        "bm25": {"retrievers": ("bm25",)},
        "dense": {"retrievers": ("dense",)},
        "hybrid-nohooks": {"retrievers": ("bm25", "dense")},
        "hybrid+hooks-lex": {"retrievers": ("bm25", "dense", "hooks-lex")},
        "hybrid+hooks-dense": {"retrievers": ("bm25", "dense", "hooks-dense")},
        "hybrid-rrf": {"retrievers": ("bm25", "dense", "hooks")},  # fusion alone, no learned stage
        "hybrid": {},
        "hybrid+rerank": {"rerank": True},
        "llm": {"mode": "llm"},
    }
    if name not in options:
        raise ConfigError(f"unknown benchmark configuration {name!r}",
                          hint=f"choose from {', '.join(CONFIG_ORDER)}")
    return _from_ask(assistant, **options[name])


def corpus_chunk_texts(assistant: Any) -> list[str]:
    return [c.text for d in assistant.documents() for c in assistant.clauses(d.doc_id)]


def _timed(adapter: Adapter, item: EvalItem, k: int) -> ConfigOutput:
    start = time.perf_counter()
    try:
        out = adapter(item, k)
    except RagError as exc:
        # One failing item (an LLM timeout, say) is recorded as a miss rather
        # than discarding the whole run; programming errors still propagate.
        log.warning("%s failed: %s", item.id, exc)
        out = ConfigOutput(retrieved=[], cited=[], answer="", abstained=False, error=str(exc))
    out.latency_ms = (time.perf_counter() - start) * 1000
    return out


def _wanted_configs(assistant: Any, configs: Sequence[str] | None) -> list[str]:
    """The configurations to run, in report order: those asked for, else all available here."""
    available = available_configs(assistant)
    wanted = list(configs) if configs else available
    for name in wanted:
        if name not in CONFIG_ORDER:
            raise ConfigError(f"unknown benchmark configuration {name!r}",
                              hint=f"choose from {', '.join(CONFIG_ORDER)}")
        if name not in available:
            raise ConfigError(f"configuration {name!r} is not available here",
                              hint="hybrid+rerank needs a reranker, llm a configured model")
    return [c for c in CONFIG_ORDER if c in wanted]


def run_benchmark(
    assistant: Any,
    dataset_paths: str | Path | Iterable[str | Path],
    *,
    configs: Sequence[str] | None = None,
    k: int = 5,
    data_dir: Path,
    progress: Callable[[float, str], None] | None = None,
    answers: Sequence[str | Path] = (),
    on_output: Callable[[str, EvalItem, ConfigOutput], None] | None = None,
) -> dict[str, Any]:
    """Run every configuration over the datasets; return the full JSON report.

    `answers`: answers files of other systems (rag.bench.external), scored beside the
    configurations. `on_output` sees every configuration's raw output (for
    --dump-answers).
    """
    files = _dataset_files(dataset_paths)
    items = load_dataset(files)
    # Read other systems' answers first: a malformed file fails before the long run.
    other = {external.system_name(p): external.load_answers(p) for p in answers}
    for p, loaded in zip(answers, other.values(), strict=True):
        external.check_coverage([it.id for it in items], loaded, Path(p))
    wanted = _wanted_configs(assistant, configs)

    summaries = assistant.documents()
    chunk_texts = corpus_chunk_texts(assistant)
    unlocatable = find_unlocatable(items, chunk_texts)
    for item_id in unlocatable:
        log.warning("unlocatable: no chunk holds the evidence of %s; excluded from metrics", item_id)
    skip = set(unlocatable)
    scored = [it for it in items if it.id not in skip]
    index = EvalIndex.from_assistant(assistant)
    kinds = {it.id: index.item_kind(it.evidence) for it in scored}

    total = max(1, len(wanted) * len(scored))
    done = 0
    results: dict[str, Any] = {}
    with tqdm(total=total, desc="benchmark", unit="q", disable=None) as bar:
        for name in wanted:
            def note(msg: str, at: float = done / total) -> None:
                bar.set_postfix_str(msg)
                if progress:
                    progress(at, msg)

            note(f"{name}: preparing")
            adapter = make_adapter(name, assistant, Path(data_dir), note)
            if scored and name not in ("naive", "llm"):
                # Warm-up (not recorded): lazy model loading must not land in p95.
                _timed(adapter, scored[0], k)
            records = []
            for i, item in enumerate(scored, start=1):
                out = _timed(adapter, item, k)
                if on_output:
                    on_output(name, item, out)
                records.append(score_item(item, out, top=k) | {"doc_kind": kinds[item.id]})
                done += 1
                bar.set_postfix_str(name)
                bar.update(1)
                if progress:
                    progress(done / total, f"{name}: {i}/{len(scored)}")
            results[name] = summarize_config(records)
            log.info("%s: hit@1=%s hit@5=%s", name, results[name]["overall"]["hit@1"],
                     results[name]["overall"]["hit@5"])
    for system, loaded in other.items():
        results[system] = summarize_config(
            [score_item(it, external.to_output(loaded.get(it.id), index), top=k)
             | {"doc_kind": kinds[it.id], "latency_ms": None} for it in scored])
    report = {
        "configs": results,
        "unlocatable": unlocatable,
        "datasets": [
            {"path": str(f), "items": sum(1 for it in items if it.file == str(f))} for f in files
        ],
        "k": k,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "corpus": {"documents": len(summaries), "chunks": len(chunk_texts)},
        "default_config": DEFAULT_CONFIG if DEFAULT_CONFIG in results else next(iter(results), ""),
    }
    return add_uncertainty(report)
