"""Answer composition. Extractive answers: verbatim sentences of the retrieved clauses, each
with its [n] marker, then the sources — or an honest abstention. Deterministic, no model.
Every answer, extractive or written by an LLM, is finished here (`finish`, `abstain`): links,
other versions, status warnings by the as-of date, timings."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rag.corpus.chunk import split_sentences
from rag.corpus.defects import source_note
from rag.corpus.titles import clause_english_title
from rag.index.lexical import query_tokens
from rag.models import IN_FORCE, NOT_YET_IN_FORCE, AskResult, Chunk, Citation, ScoredChunk

MAX_QUOTES = 3
# Measured on dev (citation precision / recall / keyword recall): 3 clauses at 0.75:
# 0.47/0.77/0.69; 2 at 1.3: 0.65/0.70/0.64; 1 clause: 0.70/0.69/0.63. A wrong citation
# is the worst failure, so a second clause is quoted only when its best sentence matches
# the question clearly better (x1.3) than the top clause's does.
MAX_CLAUSES = 2
SECOND_CLAUSE_RATIO = 1.3
# When the learned stage ranked the clauses (they carry a confidence), its first clause is
# cited alone: on the development sets 3 of 39 second citations held the evidence; citing the
# first alone raised citation precision from 0.657 to 0.736. Even a near tie (second at
# >= 0.75 of the first's confidence) was right 1 time in 6.
_HEADING = re.compile(r"^（[一二三四五六七八九十]+）[^。；]{2,30}。$")


@dataclass(frozen=True)
class Evidence:
    """How strongly the retrieved clauses support an answer (used to abstain)."""

    coverage: float  # share of query term weight found in the best clause
    dense: float  # cosine similarity of the best clause
    exact: bool  # the question named a clause that exists

    @property
    def score(self) -> float:
        return 1.0 if self.exact else round(0.5 * self.coverage + 0.5 * self.dense_part, 4)

    @property
    def dense_part(self) -> float:
        # e5 cosine lives in a narrow band (~0.75 unrelated … ~0.9 on point).
        return max(0.0, min(1.0, (self.dense - 0.78) / 0.12))


def term_weight(token: str) -> float:
    return min(len(token), 4) / 2.0  # longer Chinese words are more specific


def sentence_score(sentence: str, tokens: list[str]) -> float:
    text = sentence.lower()
    return sum(term_weight(t) for t in tokens if t in text)


def coverage(text: str, tokens: list[str]) -> float:
    total = sum(term_weight(t) for t in tokens)
    return sentence_score(text, tokens) / total if total else 0.0


def evidence_of(results: list[ScoredChunk], tokens: list[str], exact: bool) -> Evidence:
    if not results:
        return Evidence(0.0, 0.0, False)
    top = results[:3]
    cov = max(coverage(r.chunk.text + r.chunk.section_path, tokens) for r in top)
    dense = max((r.scores.get("dense") or 0.0) for r in top)
    return Evidence(cov, dense, exact)


def sentences_of(clause: Chunk) -> list[str]:
    text = clause.text
    out = []
    for s, e in split_sentences(text):
        sentence = text[s:e].strip()
        if sentence:
            out.append(sentence)
    return out


def pick_quotes(results: list[ScoredChunk], tokens: list[str], exact: bool) -> list[tuple[ScoredChunk, list[str]]]:
    """Best sentences of the top clauses, in document order within each clause."""
    picked: list[tuple[ScoredChunk, list[str]]] = []
    best_overall = 0.0
    quotes_left = MAX_QUOTES
    for i, r in enumerate(results[:MAX_CLAUSES]):
        sentences = sentences_of(r.chunk)
        content = [s for s in sentences if not _HEADING.match(s)] or sentences
        scored = [(sentence_score(s, tokens), j, s) for j, s in enumerate(content)]
        if i == 0 and exact:
            # The question named this clause: quote it from its beginning.
            chosen = [s for _, _, s in scored[:MAX_QUOTES]]
            picked.append((r, chosen))
            return picked
        scored.sort(key=lambda x: (-x[0], x[1]))
        top_score = scored[0][0] if scored else 0.0
        if i == 0:
            best_overall = top_score
        elif top_score <= 0 or top_score < SECOND_CLAUSE_RATIO * best_overall or r.confidence is not None:
            continue
        take = [x for x in scored if x[0] > 0 and x[0] >= 0.6 * top_score][: min(2, quotes_left)]
        if not take and i == 0 and scored:
            take = scored[:1]
        if not take:
            continue
        chosen = [s for _, _, s in sorted(take, key=lambda x: x[1])]
        picked.append((r, chosen))
        quotes_left -= len(chosen)
        if quotes_left <= 0:
            break
    return picked


def make_citation(n: int, chunk: Chunk, quotes: list[str]) -> Citation:
    return Citation(
        n=n, label=chunk.label, doc_id=chunk.doc_id, doc_title=chunk.doc_title, status=chunk.status,
        date=chunk.date, section_path=chunk.section_path, text=chunk.text, quotes=quotes,
        english_title=clause_english_title(chunk.short_title, chunk.clause_key, chunk.kind,
                                           chunk.english_title),
        in_force=chunk.status == IN_FORCE,
    )


def status_warnings(citations: list[Citation], chunks: dict[int, Chunk], lang: str,
                    today: dt.date | None = None) -> list[str]:
    today = today or dt.date.today()
    out = []
    for c in citations:
        eff = chunks[c.n].effective_date
        if c.status == NOT_YET_IN_FORCE:
            out.append(f"[{c.n}] {c.label} is adopted but not yet in force (it takes effect on {eff}); "
                       "shown for reference only." if lang == "en"
                       else f"[{c.n}] {c.label}尚未生效（自{eff}起施行），仅供参考。")
        elif not c.in_force:
            out.append(f"[{c.n}] {c.label} is {c.status}: it is no longer in force and is shown for reference only."
                       if lang == "en" else f"[{c.n}] {c.label}{c.status}，已不再有效，仅供参考。")
        if eff and c.in_force and eff > today.isoformat():
            out.append(f"[{c.n}] {c.label} takes effect on {eff}; it is not yet applicable."
                       if lang == "en" else f"[{c.n}] {c.label}自{eff}起施行，目前尚未施行。")
        if note := source_note(chunks[c.n].short_title, chunks[c.n].clause_key, lang):
            out.append(f"[{c.n}] {c.label}: {note}" if lang == "en" else f"[{c.n}] {c.label}：{note}。")
    return out


def add_links_and_versions(citations: list[Citation], chunks: dict[int, Chunk],
                           see_also: Callable[[Chunk], list[str]],
                           other_version: Callable[[Chunk], dict[str, str] | None]) -> None:
    """Fill each citation's see_also, effective_date and other_version from its clause."""
    for c in citations:
        chunk = chunks.get(c.n)
        if chunk is None:
            continue
        c.effective_date = chunk.effective_date
        c.see_also = see_also(chunk)
        c.other_version = other_version(chunk)


def link_lines(citations: list[Citation], lang: str) -> list[str]:
    """'See also' and 'a revised text takes effect …' lines under the sources."""
    out = []
    for c in citations:
        if c.see_also:
            out.append(f"    [{c.n}] see also: " + ", ".join(c.see_also) if lang == "en"
                       else f"    [{c.n}] 另见：" + "、".join(c.see_also))
        if c.other_version:
            o = c.other_version
            out.append(f"    [{c.n}] revised text adopted {o['date']} takes effect {o['effective_date']}: {o['label']}"
                       if lang == "en" else f"    [{c.n}] {o['date']}修改的文本自{o['effective_date']}起施行：{o['label']}")
    return out


def source_line(c: Citation, lang: str) -> str:
    status = c.status if c.in_force else f"{c.status} ⚠"
    title = f"{c.label} {c.english_title}" if lang == "en" and c.english_title else c.label
    return f"[{c.n}] {title} — {c.doc_title} — {status} — {c.date}"


GIST_LABEL = "Unofficial English gist (not the official text)"


def compose(question_lang: str, picked: list[tuple[ScoredChunk, list[str]]],
            gist_of: Callable[[Chunk], str] | None = None) -> tuple[str, list[Citation], dict[int, Chunk]]:
    """The extractive answer. English answers carry each clause's unofficial gist, labelled
    as such, after its source line; the gist is never quoted as the clause."""
    citations: list[Citation] = []
    chunks: dict[int, Chunk] = {}
    lines = ["According to the corpus (quoted in the original Chinese):" if question_lang == "en"
             else "根据语料库中的条款："]
    for n, (r, quotes) in enumerate(picked, start=1):
        citation = make_citation(n, r.chunk, quotes)
        if question_lang == "en" and gist_of is not None:
            citation.gist_en = gist_of(r.chunk)
        citations.append(citation)
        chunks[n] = r.chunk
        for q in quotes:
            lines.append(f"- 「{q}」[{n}]")
    lines.append("")
    lines.append("Sources:" if question_lang == "en" else "来源：")
    for c in citations:
        lines.append(source_line(c, question_lang))
        if c.gist_en:
            lines.append(f"    {GIST_LABEL}: {c.gist_en}")
    return "\n".join(lines), citations, chunks


def abstention_text(lang: str, related: list[ScoredChunk]) -> str:
    if lang == "en":
        head = "The corpus holds no basis for answering this question."
        tail = "Related clauses (not an answer):"
    else:
        head = "语料库中没有找到回答该问题的依据。"
        tail = "相关条款（非答案）："
    lines = [head]
    if related:
        lines.append(tail)
        lines += [f"- {r.chunk.label}（{r.chunk.section_path}）" for r in related]
    return "\n".join(lines)


def answer_tokens(question: str, context: str) -> list[str]:
    """Tokens for sentence scoring: the question's, then a carried turn's (weaker, appended)."""
    tokens = query_tokens(question)
    if context:
        tokens += [t for t in query_tokens(context) if t not in tokens]
    return tokens


@dataclass
class AnswerFrame:
    """What every answer to one question shares, however its text was made."""

    question: str
    language: str  # of the question: zh | en | mixed
    mode: str
    resolved_question: str
    retrieved: list[ScoredChunk]
    today: dt.date  # status warnings are as of this date (RAG_AS_OF)
    see_also: Callable[[Chunk], list[str]]
    other_version: Callable[[Chunk], dict[str, str] | None]
    t0: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)  # ms per step so far

    @property
    def answer_language(self) -> str:
        return "zh" if self.language == "zh" else "en"

    def _result(self, **fields) -> AskResult:
        timings = {**self.timings, "total": (time.perf_counter() - self.t0) * 1000}
        return AskResult(question=self.question, language=self.language, retrieved=self.retrieved,
                         mode=self.mode, resolved_question=self.resolved_question,
                         timings_ms={k: round(v, 2) for k, v in timings.items()}, **fields)


def finish(frame: AnswerFrame, body: str, citations: list[Citation], chunks: dict[int, Chunk],
           warnings: list[str] | None = None) -> AskResult:
    """The answer as shown: the body (quotes or checked model sentences, then sources), the
    cited clauses' links and other versions, and a note per clause not in force or not yet
    applicable on the as-of date. `warnings` (e.g. the LLM checks') follow those notes."""
    lang = frame.answer_language
    add_links_and_versions(citations, chunks, frame.see_also, frame.other_version)
    text = "\n".join([body, *link_lines(citations, lang)])
    status = status_warnings(citations, chunks, lang, today=frame.today)
    if status:
        text += "\n\n" + "\n".join(("Note: " if lang == "en" else "注意：") + w for w in status)
    return frame._result(answer=text, abstained=False, citations=citations, warnings=status + (warnings or []))


def abstain(frame: AnswerFrame, reason: str) -> AskResult:
    """No answer: says so, and lists the top clauses as related (not as an answer)."""
    related = frame.retrieved[:3]
    return frame._result(answer=abstention_text(frame.answer_language, related), abstained=True, citations=[],
                         related=[r.chunk.label for r in related], warnings=[reason])
