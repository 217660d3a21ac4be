"""A small in-memory stand-in for `rag.qa.assistant.Assistant`.

It implements the same methods with a naive term matcher so the web app can be
developed, tested and demonstrated without an index. It is not a retriever:
answers are the sentences of the best-matching clauses, marked [n].
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.corpus.chunk import split_sentences
from rag.index.clauses import Filters
from rag.models import IN_FORCE, AddedFiles, AskResult, Chunk, Citation, Health, ScoredChunk
from rag.qa.loaded import DocumentSummary

_MEASURE = re.compile(r"^（([一二三四五六七八九十]+)）")
_PART = re.compile(r"^[一二三四五六七八九十]+、")

# English question words → the Chinese terms the clauses use.
_EN_TERMS = {
    "cross-border": "跨境电商", "e-commerce": "跨境电商", "profit": "利润", "remit": "汇出",
    "send": "汇出", "home": "汇出", "land": "用地", "residential": "住宅", "housing": "住宅",
    "tax": "税", "reinvest": "再投资", "m0": "M0", "export": "出口", "digital": "数字",
    "foreign": "外商投资", "investor": "外国投资者", "industrial": "工业用地", "r&d": "研发",
}
_ZH_TERMS = ("跨境电商", "利润", "汇出", "住宅", "M0", "用地", "工业用地", "研发设计用地", "研发",
             "外汇", "数字", "出口", "外商投资", "外国投资者", "税", "再投资", "转换", "房地产",
             "土地", "混合产业用地", "标准地", "外贸", "污染", "环境")

_LAWS = [
    ("foreign-investment-law", "中华人民共和国外商投资法", "外商投资法", "法律", "全国人民代表大会",
     "2019-03-15", IN_FORCE, "Foreign Investment Law of the People's Republic of China", [
         ("第二章　投资促进", "第十八条", "县级以上地方人民政府可以根据法律、行政法规、地方性法规的规定，在法定权限内制定外商投资促进和便利化政策措施。"),
         ("第三章　投资保护", "第二十一条", "外国投资者在中国境内的出资、利润、资本收益、资产处置所得、知识产权许可使用费、依法获得的补偿或者赔偿、清算所得等，可以依法以人民币或者外汇自由汇入、汇出。"),
     ]),
    ("environmental-protection-law", "中华人民共和国环境保护法", "环境保护法", "法律", "全国人民代表大会常务委员会",
     "2014-04-24", "已废止", "Environmental Protection Law of the People's Republic of China", [
         ("第四章　防治污染和其他公害", "第四十二条", "排放污染物的企业事业单位和其他生产经营者，应当采取措施，防治在生产建设或者其他活动中产生的废气、废水、废渣、医疗废物、粉尘、恶臭气体、放射性物质以及噪声、振动、光辐射、电磁辐射等对环境的污染和危害。"),
     ]),
]


def _notice_text() -> str:
    root = Path(__file__).resolve().parent.parent / "corpus"
    for path in sorted(root.glob("**/notice-*.md")):
        text = path.read_text(encoding="utf-8")
        return text.split("---", 2)[2] if text.startswith("---") else text
    return ("一、总体要求\n（十三）提升土地资源利用效率。严防以新型产业用地（M0）等名义“打擦边球”开发住宅、"
            "商办用房等房地产项目。\n")


class DemoAssistant:
    """Same surface as rag.qa.assistant.Assistant; `extra_documents` adds (title, text) pairs."""

    def __init__(self, extra_documents: list[tuple[str, str]] | None = None, delay: float = 0.0) -> None:
        self.delay = delay  # seconds between streamed pieces, to see streaming in a browser
        self._docs: list[DocumentSummary] = []
        self._chunks: list[Chunk] = []
        self._load_notice()
        for doc_id, title, short, dtype, issuer, date, status, en, arts in _LAWS:
            chunks = [self._chunk(doc_id, title, short, dtype, issuer, date, status, f"{short}{key}", key,
                                  "article", f"{sec} > {key}", text, i, en)
                      for i, (sec, key, text) in enumerate(arts)]
            self._add_doc(doc_id, title, short, dtype, issuer, date, status, chunks, en)
        for i, (title, text) in enumerate(extra_documents or []):
            self.add_text(f"upload-{i}", title, text)
        self.added: list[list[str]] = []

    # ------------------------------------------------------------------ building
    def _chunk(self, doc_id, title, short, dtype, issuer, date, status, label, key, kind, section, text,
               ordinal, en="") -> Chunk:
        return Chunk(chunk_id=f"{doc_id}#{ordinal}", doc_id=doc_id, doc_title=title, short_title=short,
                     doc_type=dtype, issuer=issuer, date=date, status=status, label=label,
                     clause_key=key, kind=kind, section_path=section, text=text, start=0, end=len(text),
                     token_count=len(text), ordinal=ordinal, english_title=en)

    def _add_doc(self, doc_id, title, short, dtype, issuer, date, status, chunks, en="") -> None:
        self._chunks.extend(chunks)
        self._docs.append(DocumentSummary(doc_id, title, short, dtype, issuer, date, status,
                                          len(chunks), len(chunks), english_title=en))

    def _load_notice(self) -> None:
        doc = ("etdz-work-plan-2025", "商务部关于印发《深化国家级经济技术开发区改革创新以高水平开放引领高质量发展工作方案》的通知",
               "工作方案", "政策文件", "商务部", "2025-05-21", IN_FORCE)
        chunks: list[Chunk] = []
        part = ""
        for line in _notice_text().splitlines():
            line = line.strip()
            if _PART.match(line):
                part = line
            m = _MEASURE.match(line)
            if m:
                key = f"（{m.group(1)}）"
                heading = line.split("。", 1)[0]
                chunks.append(self._chunk(*doc, f"《工作方案》{key}", key, "measure", f"{part} > {heading}",
                                          line, len(chunks)))
        self._add_doc(*doc, chunks)

    def add_text(self, doc_id: str, title: str, text: str) -> None:
        chunks = [self._chunk(doc_id, title, title, "其他", "上传", "", IN_FORCE, f"{title}（{i + 1}）",
                              f"（{i + 1}）", "paragraph", title, para, i)
                  for i, para in enumerate(p for p in text.split("\n\n") if p.strip())]
        self._add_doc(doc_id, title, title, "其他", "上传", "", IN_FORCE, chunks)

    # ------------------------------------------------------------------ Assistant surface
    @property
    def llm_available(self) -> bool:
        return False

    @property
    def reranker_available(self) -> bool:
        return False

    def documents(self) -> list[DocumentSummary]:
        return list(self._docs)

    def clauses(self, doc_id: str) -> list[Chunk]:
        return [c for c in self._chunks if c.doc_id == doc_id]

    def find(self, label_or_id: str) -> list[Chunk]:
        q = label_or_id.strip().replace("中华人民共和国", "")
        return [c for c in self._chunks if q in (c.label, c.chunk_id) or c.label.replace("《", "").replace("》", "") == q]

    @property
    def build(self) -> str:
        return "demo"

    @property
    def data_dir(self) -> Path | None:
        return None  # uploads are read in place, nothing is written

    def health(self) -> Health:
        return Health(status="ok", index={"build": "demo", "documents": len(self._docs), "chunks": len(self._chunks)},
                      embedder={"name": "demo"}, store="memory", llm=False, reranker=None, as_of="")

    def add_files(self, paths: list[str]) -> AddedFiles:
        self.added.append(list(paths))
        titles = []
        for path in paths:
            p = Path(path)
            self.add_text(f"upload-{len(self._docs)}", p.stem, p.read_text(encoding="utf-8", errors="replace"))
            titles.append(p.stem)
        return AddedFiles(lines=[f"documents added {len(titles)}"], added=titles, updated=[], skipped=[])

    def _terms(self, query: str) -> list[str]:
        low = query.lower()
        terms = {zh for en, zh in _EN_TERMS.items() if en in low}
        terms |= {t for t in _ZH_TERMS if t in query}
        return sorted(terms, key=len, reverse=True)

    def _allowed(self, c: Chunk, filters: Filters | None) -> bool:
        if filters is None:
            return c.status == IN_FORCE
        return ((not filters.doc_ids or c.doc_id in filters.doc_ids)
                and (not filters.doc_types or c.doc_type in filters.doc_types)
                and (not filters.in_force_only or c.status == IN_FORCE))

    def search(self, query: str, *, k: int = 10, filters: Filters | None = None,
               retrievers: tuple[str, ...] = ("bm25", "dense"), rerank: bool | None = None) -> list[ScoredChunk]:
        exact = self.find(query)
        terms = self._terms(query)
        scored = []
        for c in self._chunks:
            if not self._allowed(c, filters) and c not in exact:
                continue
            hits = [t for t in terms if t in c.text]
            if not hits and c not in exact:
                continue
            bm25 = sum(c.text.count(t) * len(t) for t in hits) + (20.0 if c in exact else 0.0)
            dense = min(0.99, 0.55 + 0.08 * len(hits))
            scores: dict[str, float | None] = {"bm25": bm25 if "bm25" in retrievers else None,
                                               "dense": dense if "dense" in retrievers else None, "rerank": None}
            scored.append((bm25 + dense, c, scores, hits))
        scored.sort(key=lambda x: -x[0])
        return [ScoredChunk(c, i + 1, round(s / 100, 4), sc, hits) for i, (s, c, sc, hits) in enumerate(scored[:k])]

    def ask(self, question: str, *, history: list[dict[str, str]] | None = None, k: int | None = None,
            mode: str | None = None, filters: Filters | None = None,
            retrievers: tuple[str, ...] = ("bm25", "dense"), rerank: bool | None = None) -> AskResult:
        t0 = time.perf_counter()
        language = "zh" if re.search(r"[\u4e00-\u9fff]", question) else "en"
        hits = self.search(question, k=k or 5, filters=filters, retrievers=retrievers)
        exact = {c.chunk_id for c in self.find(question)}
        good = [h for h in hits if sum(map(len, h.matched_terms)) >= 4 or h.chunk.chunk_id in exact]
        citations: list[Citation] = []
        sentences: list[str] = []
        for h in good[:2]:
            sentences_here = [h.chunk.text[a:b].strip() for a, b in split_sentences(h.chunk.text)]
            quotes = [s for s in sentences_here if any(t in s for t in h.matched_terms)][:2]
            quotes = quotes or sentences_here[:1]
            n = len(citations) + 1
            citations.append(Citation(n, h.chunk.label, h.chunk.doc_id, h.chunk.doc_title, h.chunk.status,
                                      h.chunk.date, h.chunk.section_path, h.chunk.text, quotes,
                                      h.chunk.english_title, h.chunk.status == IN_FORCE))
            sentences.append(f"{h.chunk.label}：{''.join(quotes)}[{n}]")
        abstained = not citations
        if abstained:
            answer = ("The indexed documents do not answer this directly." if language == "en"
                      else "已索引的文件中没有直接回答该问题的条款。")
        else:
            lead = "The sources say:\n" if language == "en" else "根据所引条款：\n"
            answer = lead + "\n".join(sentences)
        warnings = [f"{c.label} 所在文件状态为「{c.status}」，仅供参考。" for c in citations if not c.in_force]
        return AskResult(question, language, answer, abstained, citations, hits,
                         {"total": (time.perf_counter() - t0) * 1000}, mode=mode or "extractive", resolved_question=question,
                         related=[h.chunk.label for h in hits[:3]] if abstained else [], warnings=warnings)

    def ask_stream(self, question: str, **kwargs: Any) -> Iterator[str | AskResult]:
        result = self.ask(question, **kwargs)
        for piece in re.findall(r".{1,12}", result.answer, flags=re.S):
            if self.delay:
                time.sleep(self.delay)
            yield piece
        yield result
