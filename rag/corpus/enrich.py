"""`rag enrich`: question hooks for documents a user adds, written by the configured LLM.

Entries use the bundled format (rag.corpus.hooks) and go to `<data dir>/hooks/<doc_id>.jsonl`.
The file is also the cache: a clause whose entry already carries its current hash is not
sent again. A reply that is not a valid entry is reported and skipped, never written.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from rag.corpus import hooks
from rag.errors import ConfigError
from rag.models import Chunk

log = logging.getLogger(__name__)
_JSON_OBJECT = re.compile(r"\{.*\}", re.S)


@dataclass
class EnrichSummary:
    written: int = 0
    cached: int = 0
    failed: list[str] = field(default_factory=list)  # "label: reason"

    def lines(self) -> list[str]:
        out = [f"failed {f}" for f in self.failed]
        out.append(f"question hooks: {self.written} written, {self.cached} already current, "
                   f"{len(self.failed)} failed")
        return out


def parse_reply(reply: str, clause: Chunk) -> hooks.HookEntry:
    """The model's JSON reply as an entry for `clause`; ValueError says why it is unusable."""
    m = _JSON_OBJECT.search(reply or "")
    if not m:
        raise ValueError("the reply holds no JSON object")
    try:
        data = json.loads(m.group(0))
    except ValueError as exc:
        raise ValueError(f"the reply is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError("the reply is not a JSON object")
    data = {**data, "label": clause.label, "clause_hash": hooks.clause_hash(clause.text)}
    if why := hooks.entry_problem(data):
        raise ValueError(why)
    return hooks.parse_entry(data)


def enrich(model, clauses_by_doc: dict[str, list[Chunk]], out_dir: Path, progress: bool = True) -> EnrichSummary:
    from rag.llm_client import load_prompt

    template = load_prompt("enrich")
    summary = EnrichSummary()
    out_dir.mkdir(parents=True, exist_ok=True)
    for doc_id, clauses in clauses_by_doc.items():
        path = out_dir / f"{_file_name(doc_id)}.jsonl"
        existing, _ = hooks.read_entries([out_dir]) if path.exists() else ([], [])
        current = {(e.label, e.clause_hash): e for e in existing if Path(e.source.rsplit(":", 1)[0]) == path}
        kept: list[hooks.HookEntry] = []
        for clause in tqdm(clauses, desc=f"enrich {doc_id}", unit="clause", disable=not progress):
            key = (clause.label, hooks.clause_hash(clause.text))
            if key in current:
                kept.append(current[key])
                summary.cached += 1
                continue
            prompt = template.format(document=clause.doc_title, label=clause.label, text=clause.text)
            try:
                reply = model.invoke(prompt)
                kept.append(parse_reply(str(getattr(reply, "content", reply)), clause))
                summary.written += 1
            except ValueError as exc:
                summary.failed.append(f"{clause.label}: {exc}")
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(e.to_json() + "\n" for e in kept), encoding="utf-8")
        tmp.replace(path)
    return summary


def _file_name(doc_id: str) -> str:
    return re.sub(r"[\\/\x00:]+", "_", doc_id)


def require_model(settings, chat_model=None):
    if chat_model is not None:
        return chat_model
    if not settings.llm:
        raise ConfigError("rag enrich needs an LLM to write question hooks",
                          hint="set RAG_LLM=openai with OPENAI_BASE_URL / OPENAI_API_KEY / RAG_LLM_MODEL; "
                               "without hooks, documents are still searched on their own text")
    from rag.llm_client import build_chat_model

    return build_chat_model(settings)
