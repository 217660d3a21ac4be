"""Benchmark harness: metrics on hand-made data, dataset validation, the naive
baseline, the runner against a fake assistant, and report writing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings

from rag.bench import baseline as baseline_mod
from rag.bench.baseline import ConfigOutput, NaiveBaseline, split_documents
from rag.bench.evaluate import (
    EvalItem,
    abstention_scores,
    find_unlocatable,
    first_hit_rank,
    hit_at,
    holds_evidence,
    keyword_hits,
    load_dataset,
    mrr,
    percentile,
    run_benchmark,
    score_item,
    summarize,
)
from rag.bench.report import check_thresholds, format_table, render_markdown, write_reports
from rag.errors import ConfigError, DatasetError
from rag.models import AskResult, Chunk, Citation, Document, ScoredChunk

# ---------------------------------------------------------------- metrics


def test_hit_and_mrr_on_known_ranks() -> None:
    ranks = [1, None, 3]
    assert hit_at(ranks, 1) == pytest.approx(1 / 3)
    assert hit_at(ranks, 3) == pytest.approx(2 / 3)
    assert hit_at(ranks, 5) == pytest.approx(2 / 3)
    assert mrr(ranks) == pytest.approx((1 + 0 + 1 / 3) / 3)
    assert mrr([11, 2], cutoff=10) == pytest.approx(0.25)  # rank 11 is past the cutoff
    assert hit_at([], 1) is None


def test_abstention_scores_known_counts() -> None:
    # should abstain, did abstain: TP, FN, FP, TN → P = R = F1 = 1/2
    assert abstention_scores([True, True, False, False], [True, False, True, False]) == (
        0.5, 0.5, 0.5)
    # The naive baseline never abstains: precision undefined, recall and F1 zero.
    assert abstention_scores([True, False], [False, False]) == (None, 0.0, 0.0)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([40, 10, 30, 20], 50) == 20
    assert percentile([40, 10, 30, 20], 95) == 40
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([], 50) is None


def test_evidence_matching_folds_script_and_punctuation() -> None:
    chunk = "（十三）外商投資企業依法平等適用國家支持企業發展的各項政策。"
    assert holds_evidence(chunk, ["外商投资企业依法平等适用国家支持企业发展"])
    assert holds_evidence("提高到 15 %, 並且", ["提高到15％，并且"])
    assert not holds_evidence(chunk, ["外资企业平等适用"])
    assert first_hit_rank(["无关", "另一段", chunk], ["各项政策"]) == 3
    assert first_hit_rank(["无关"], ["各项政策"]) is None


def test_keyword_hits_folds_case_and_script() -> None:
    assert keyword_hits("Foreign-Investment 企業 may apply", ["foreign investment", "企业", "X"]) == 2


def _record(answerable: bool, **kw: Any) -> dict[str, Any]:
    base = {"id": "x", "lang": "zh", "category": "c", "answerable": answerable, "hit_rank": None,
            "cited_ok": None, "keyword_recall": None, "abstained": False, "latency_ms": 10.0,
            "top_labels": [], "n_cited": 0, "n_cited_ok": 0, "n_keywords": 0,
            "n_keywords_found": 0}
    return base | kw


def test_summarize_known_answers() -> None:
    records = [
        _record(True, hit_rank=1, n_cited=2, n_cited_ok=1, cited_ok=True, n_keywords=2,
                n_keywords_found=2, latency_ms=10.0),
        _record(True, hit_rank=None, n_cited=3, n_cited_ok=0, cited_ok=False, n_keywords=2,
                n_keywords_found=0, latency_ms=20.0),
        # Abstained on an answerable item: its citation is not judged by precision.
        _record(True, hit_rank=3, abstained=True, n_cited=1, n_cited_ok=1, cited_ok=True,
                n_keywords=1, n_keywords_found=1, latency_ms=30.0),
        _record(False, abstained=True, latency_ms=40.0),
    ]
    m = summarize(records)
    assert m["hit@1"] == pytest.approx(1 / 3)
    assert m["mrr@10"] == pytest.approx((1 + 0 + 1 / 3) / 3)
    assert m["citation_precision"] == pytest.approx(1 / 5)
    assert m["citation_recall"] == pytest.approx(2 / 3)
    assert m["keyword_recall"] == pytest.approx(3 / 5)
    assert (m["abstention_precision"], m["abstention_recall"]) == (0.5, 1.0)
    assert m["abstention_f1"] == pytest.approx(2 / 3)
    assert (m["latency_p50_ms"], m["latency_p95_ms"], m["n"]) == (20.0, 40.0, 4)


def _item(id_: str = "a", answerable: bool = True, **kw: Any) -> EvalItem:
    fields: dict[str, Any] = {
        "id": id_, "question": "q", "lang": "zh", "answerable": answerable,
        "evidence": ("各项政策",) if answerable else (), "answer_keywords": ("平等",),
        "category": "c",
    }
    return EvalItem(**(fields | kw))


def test_score_item_record() -> None:
    out = ConfigOutput(retrieved=[("L1", "无关"), ("L2", "平等适用各项政策")],
                       cited=[("L2", "平等适用各项政策"), ("L1", "无关")],
                       answer="依法平等适用", abstained=False, latency_ms=12.34)
    r = score_item(_item(), out)
    assert (r["hit_rank"], r["cited_ok"], r["n_cited_ok"], r["keyword_recall"]) == (2, True, 1, 1.0)
    assert r["top_labels"] == ["L1", "L2"] and r["latency_ms"] == 12.3


def test_find_unlocatable_does_not_match_across_chunks() -> None:
    items = [_item("ok", evidence=("各项政策",)), _item("split", evidence=("政策支持",)),
             _item("none", answerable=False)]
    assert find_unlocatable(items, ["平等适用各项政策", "支持企业"]) == ["split"]


# ---------------------------------------------------------------- dataset

GOOD = {"id": "t1", "question": "问题？", "lang": "zh", "answerable": True,
        "evidence": ["各项政策"], "answer_keywords": ["政策"], "category": "policy",
        "source": "《工作方案》（十三）", "future_field": 1,
        "history": [{"role": "user", "content": "前一个问题"}]}


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_dataset_accepts_blank_lines_and_unknown_fields(tmp_path: Path) -> None:
    unans = GOOD | {"id": "t2", "answerable": False, "evidence": [], "history": None}
    f = _write(tmp_path / "a.jsonl", [json.dumps(GOOD, ensure_ascii=False), "", "  ",
                                      json.dumps(unans, ensure_ascii=False)])
    items = load_dataset([f])
    assert [i.id for i in items] == ["t1", "t2"]
    assert items[0].history == ({"role": "user", "content": "前一个问题"},)
    assert (items[1].line, items[1].history, items[0].source) == (4, (), "《工作方案》（十三）")
    assert [i.id for i in load_dataset(tmp_path)] == ["t1", "t2"]  # a folder of *.jsonl


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ('{"id": "x", ', "invalid JSON"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "lang"}), "missing field 'lang'"),
        (json.dumps(GOOD | {"lang": "fr"}), "'lang' must be"),
        (json.dumps(GOOD | {"answerable": "yes"}), "'answerable' must be"),
        (json.dumps(GOOD | {"evidence": []}), "needs at least one evidence"),
        (json.dumps(GOOD | {"evidence": ["，。"]}), "no letters or digits"),
        (json.dumps(GOOD | {"history": [{"role": "bot", "content": "x"}]}), "'history'"),
        (json.dumps(GOOD | {"id": "t0"}), "duplicate id 't0'"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, bad: str, expected: str) -> None:
    first = json.dumps(GOOD | {"id": "t0"}, ensure_ascii=False)
    f = _write(tmp_path / "broken.jsonl", [first, "", bad])
    with pytest.raises(DatasetError) as err:
        load_dataset([f])
    assert "broken.jsonl:3: " in err.value.message
    assert expected in err.value.message


def test_missing_dataset_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset([tmp_path / "nope.jsonl"])


# ---------------------------------------------------------------- naive baseline


class FakeEmbedder(Embeddings):
    """Deterministic bag-of-characters vectors; counts embed_documents calls."""

    model_name = "fake-chars"

    def __init__(self) -> None:
        self.document_calls = 0

    def _vec(self, text: str) -> list[float]:
        v = np.zeros(64)
        for ch in text:
            if not ch.isspace():
                v[int(hashlib.md5(ch.encode()).hexdigest(), 16) % 64] += 1
        return v.tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.document_calls += 1
        return [self._vec(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vec(text)


def _doc(doc_id: str, short: str, text: str) -> Document:
    return Document(doc_id=doc_id, title=short, short_title=short, doc_type="政策文件",
                    issuer="商务部", date="2025-05-21", status="现行有效", text=text, source="x")


# About 300 characters each: two never fit in one 500-character chunk.
PARAS = ["土地资源利用效率要提高，" * 25, "外商投资企业平等适用政策，" * 24, "数据跨境流动便利化，" * 30]
DOCS = [_doc("plan", "工作方案", "\n\n".join(PARAS)), _doc("law", "", "关税与海关监管。")]


def test_naive_splitter_labels_and_sizes() -> None:
    chunks = split_documents(DOCS)
    assert [label for label, _ in chunks[:2]] == ["naive#工作方案#1", "naive#工作方案#2"]
    assert chunks[-1] == ("naive#law#1", "关税与海关监管。")  # no short title: the doc id
    assert all(len(text) <= 500 for _, text in chunks)
    assert [text for _, text in chunks[:3]] == PARAS

    # Text without separators is cut by characters, 500 long with 50 overlapping.
    long = "".join(chr(0x4E00 + i % 500) for i in range(1200))
    parts = [t for _, t in split_documents([_doc("long", "长", long)])]
    assert [len(t) for t in parts] == [500, 500, 300]
    assert parts[1][:50] == parts[0][-50:] and "".join([parts[0], parts[1][50:], parts[2][50:]]) == long


def test_naive_baseline_retrieves_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baseline_mod, "_MATRICES", {})
    emb = FakeEmbedder()
    base = NaiveBaseline(DOCS, emb, tmp_path)
    out = base.answer("外商投资企业平等适用政策吗", k=2)
    assert out.retrieved[0][0] == "naive#工作方案#2"
    assert out.cited == out.retrieved and not out.abstained and len(out.retrieved) == 2
    assert out.answer.startswith(PARAS[1].strip()[:20])
    assert base.cache_path.exists() and emb.document_calls == 1

    # A new process (empty memory cache) reads the matrix from disk.
    monkeypatch.setattr(baseline_mod, "_MATRICES", {})
    emb2 = FakeEmbedder()
    again = NaiveBaseline(DOCS, emb2, tmp_path)
    assert np.allclose(again.matrix(), base.matrix()) and emb2.document_calls == 0

    # Changed texts get a new key, so a stale matrix is never reused.
    changed = NaiveBaseline([DOCS[0], _doc("law", "", "关税。")], FakeEmbedder(), tmp_path)
    assert changed.key != base.key

    # Old matrices are pruned once more than three exist.
    for n in range(4):
        NaiveBaseline([_doc("law", "", f"关税{n}。")], FakeEmbedder(), tmp_path).matrix()
    assert len(list((tmp_path / "baseline").glob("naive-*.npy"))) == 3


# ---------------------------------------------------------------- runner


def _chunk(label: str, text: str) -> Chunk:
    return Chunk(chunk_id=label, doc_id="plan", doc_title="工作方案", short_title="工作方案",
                 doc_type="政策文件", issuer="商务部", date="2025-05-21", status="现行有效",
                 label=label, clause_key=label, kind="measure", section_path="", text=text,
                 start=0, end=len(text), token_count=len(text), ordinal=0)


class FakeSummary:
    doc_id = "plan"


class FakeAssistant:
    """Retrieves by substring; bm25 finds nothing, dense and hybrid find the clause."""

    reranker_available = False
    llm_available = False

    def __init__(self) -> None:
        self.chunks = [_chunk(f"《工作方案》（{i}）", p) for i, p in enumerate(PARAS, 1)]
        self.embedder = FakeEmbedder()
        self.calls: list[tuple[str, Any]] = []

    def documents(self) -> list[FakeSummary]:
        return [FakeSummary()]

    def clauses(self, doc_id: str) -> list[Chunk]:
        return self.chunks

    def document_records(self) -> list[Document]:
        return [DOCS[0]]

    def ask(self, question: str, *, history: Any = None, k: int = 5,
            retrievers: tuple[str, ...] = ("bm25", "dense"), **kw: Any) -> AskResult:
        self.calls.append((question, retrievers))
        hits = [] if retrievers == ("bm25",) else [
            c for c in self.chunks if any(w in c.text for w in question.split())]
        cites = [Citation(n=1, label=c.label, doc_id="plan", doc_title="", status="", date="",
                          section_path="", text=c.text, quotes=[]) for c in hits[:1]]
        return AskResult(question=question, language="zh", answer=" ".join(c.text for c in hits),
                         abstained=not hits, citations=cites,
                         retrieved=[ScoredChunk(c, i, 1.0) for i, c in enumerate(hits, 1)],
                         timings_ms={})


def _dataset(tmp_path: Path) -> Path:
    rows = [
        {"id": "z1", "question": "外商投资企业 平等", "lang": "zh", "answerable": True,
         "evidence": ["外商投资企业平等适用政策"], "answer_keywords": ["平等"], "category": "fdi"},
        {"id": "e1", "question": "数据跨境流动 data", "lang": "en", "answerable": True,
         "evidence": ["数据跨境流动便利化"], "answer_keywords": ["便利化"], "category": "data"},
        {"id": "u1", "question": "天气 如何", "lang": "en", "answerable": False, "evidence": [],
         "answer_keywords": [], "category": "out-of-scope"},
        {"id": "gone", "question": "不存在", "lang": "zh", "answerable": True,
         "evidence": ["语料里没有的句子"], "answer_keywords": [], "category": "fdi"},
    ]
    return _write(tmp_path / "test.jsonl", [json.dumps(r, ensure_ascii=False) for r in rows])


def test_run_benchmark_end_to_end(tmp_path: Path) -> None:
    seen: list[tuple[float, str]] = []
    report = run_benchmark(FakeAssistant(), [_dataset(tmp_path)], k=3, data_dir=tmp_path,
                           progress=lambda f, msg: seen.append((f, msg)))
    assert list(report["configs"]) == ["naive", "bm25", "dense", "hybrid-nohooks", "hybrid-rrf", "hybrid"]
    assert report["unlocatable"] == ["gone"]
    assert report["corpus"] == {"documents": 1, "chunks": 3}
    hybrid = report["configs"]["hybrid"]
    assert hybrid["overall"]["n"] == 3 and hybrid["overall"]["hit@1"] == 1.0
    assert hybrid["overall"]["abstention_f1"] == 1.0
    assert hybrid["by_lang"]["en"]["n"] == 2 and set(hybrid["by_category"]) == {
        "fdi", "data", "out-of-scope"}
    assert report["configs"]["bm25"]["overall"]["hit@5"] == 0.0
    assert report["configs"]["naive"]["overall"]["abstention_recall"] == 0.0
    assert [i["id"] for i in hybrid["items"]] == ["z1", "e1", "u1"]
    assert seen[-1] == (pytest.approx(1.0), "hybrid: 3/3")
    assert (0.0, "naive: embedding chunks 3/3") in seen
    json.dumps(report)  # the report must be plain JSON

    with pytest.raises(ConfigError):
        run_benchmark(FakeAssistant(), [_dataset(tmp_path)], configs=["llm"], data_dir=tmp_path)


# ---------------------------------------------------------------- reports


def _report(hit1: float) -> dict[str, Any]:
    m = {"hit@1": hit1, "hit@3": 0.9, "hit@5": 0.97, "mrr@10": 0.9, "citation_precision": 0.95,
         "citation_recall": 0.9, "keyword_recall": 0.9, "abstention_precision": None,
         "abstention_recall": 0.0, "abstention_f1": 0.95, "latency_p50_ms": 12.0,
         "latency_p95_ms": 80.0, "n": 10}
    item = {"id": "q7", "lang": "en", "category": "c", "answerable": True, "hit_rank": None,
            "cited_ok": False, "keyword_recall": 0.0, "abstained": False, "latency_ms": 5.0,
            "top_labels": ["《工作方案》（二）"], "question": "Who | what?", "source": "（十三）"}
    cfg = {"overall": m, "by_lang": {"zh": m | {"hit@5": 1.0}, "en": m | {"hit@5": 0.95}},
           "by_category": {"c": m}, "items": [item]}
    return {"configs": {"naive": cfg, "hybrid": cfg}, "unlocatable": ["x9"],
            "datasets": [{"path": "eval/items/test.jsonl", "items": 11}], "k": 5,
            "created": "2025-01-01T00:00:00+00:00", "corpus": {"documents": 2, "chunks": 9}}


def test_check_thresholds_messages() -> None:
    report = _report(0.81)
    assert check_thresholds(report, {"hit@1": 0.85, "hit@5": 0.95}) == ["hit@1 0.81 < 0.85"]
    assert check_thresholds(report, {"latency_p95_ms": 50}) == ["latency_p95_ms 80 > 50"]
    assert check_thresholds(report, {"gap.hit@5": 0.03}) == ["gap.hit@5 0.05 > 0.03"]
    assert check_thresholds(report, {"abstention_precision": 0.5}) == [
        "abstention_precision n/a < 0.5"]
    assert check_thresholds(_report(0.9), {"hit@1": 0.85, "en.hit@5": 0.95}) == []
    with pytest.raises(ConfigError):
        check_thresholds(report, {"hit@2": 0.5})


def test_format_table_and_markdown() -> None:
    report = _report(0.81)
    table = format_table(report).splitlines()
    assert table[0].split()[:3] == ["config", "hit@1", "hit@3"]
    assert table[2].split()[:2] == ["naive", "0.810"] and "n/a" in table[3]
    md = render_markdown(report)
    assert "| hit@1 ≥ 0.85 | 0.810 | **missed** | short by 0.040 |" in md
    assert "| English hit@5 within 3 points of Chinese | 0.050 | **missed** | short by 0.020 |" in md
    assert "| q7 | Who \\| what? | （十三） | evidence not retrieved" in md


def test_write_reports_produces_three_valid_files(tmp_path: Path) -> None:
    report = _report(0.9)
    paths = write_reports(report, tmp_path / "out")
    assert {p.name for p in paths.values()} == {"report.md", "report.json", "chart.png"}
    assert json.loads(paths["json"].read_text(encoding="utf-8")) == report
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["chart"].stat().st_size > 5000
    assert "## Targets" in paths["markdown"].read_text(encoding="utf-8")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "chart.png", "report.json", "report.md"]  # no temporary files left behind


@pytest.mark.parametrize(
    ("source", "shown"),
    [({"law": "外商投资法", "article": 21}, '{"law":"外商投资法","article":21}'),
     (["《工作方案》（十三）", 13], '["《工作方案》（十三）",13]'), (0, "0"), (None, ""), ("（十三）", "（十三）")],
)
def test_source_may_be_any_json_value(tmp_path: Path, source: Any, shown: str) -> None:
    f = _write(tmp_path / "others.jsonl", [json.dumps(GOOD | {"source": source}, ensure_ascii=False)])
    (item,) = load_dataset([f])
    assert item.source == shown
