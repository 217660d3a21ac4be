"""The bundled State Council regulations: source files + front matter → corpus/documents/regulations.

`python -m rag.corpus.regulations [SOURCE_DIR]` rewrites the bundled files from the source folder
(by default ../shared/sources/regulations); the body is the source file unchanged, so the
project's normaliser at ingest is the only change to the text.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from rag.corpus.loaders import date_from_name, title_from_name
from rag.errors import CorpusError
from rag.models import IN_FORCE
from rag.settings import REPO_ROOT

MANIFEST = "regulations.yaml"
FOLDER = "regulations"
_TAKES_EFFECT = re.compile(r"本(?:条例|规定|细则|办法)自(\d{4})年(\d{1,2})月(\d{1,2})日起施行")


@dataclass(frozen=True)
class RegulationEntry:
    file: str
    english_title: str
    source_repository: str
    source_commit: str


def load_manifest(path: Path) -> list[RegulationEntry]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CorpusError(f"cannot read {path}: {exc}", hint="fix the YAML") from exc
    repo, commit = data.get("source_repository", ""), data.get("source_commit", "")
    return [RegulationEntry(file=str(item["file"]), english_title=str(item.get("english_title", "")),
                            source_repository=str(item.get("source_repository", repo)),
                            source_commit=str(item.get("source_commit", commit)))
            for item in data.get("regulations", [])]


def effective_date(text: str, version_date: str) -> str:
    """The later of the version date and the date the text says it takes effect."""
    found = [f"{y}-{int(m):02d}-{int(d):02d}" for y, m, d in _TAKES_EFFECT.findall(text)]
    return max([version_date, *found]) if found else version_date


def front_matter(entry: RegulationEntry, source_text: str) -> dict[str, str]:
    first = source_text.lstrip().splitlines()[0]
    title = first.lstrip("#").strip() if first.startswith("#") else title_from_name(Path(entry.file))
    date = date_from_name(entry.file)
    short = title.removeprefix("中华人民共和国")
    return {
        "doc_id": short, "title": title, "short_title": short, "english_title": entry.english_title,
        "doc_type": "行政法规", "issuer": "国务院", "date": date,
        "effective_date": effective_date(source_text, date), "status": IN_FORCE,
        "source": f"{entry.source_repository}@{entry.source_commit}: {entry.file}",
    }


def bundled_text(entry: RegulationEntry, source_text: str) -> str:
    meta = yaml.safe_dump(front_matter(entry, source_text), allow_unicode=True, sort_keys=False,
                          width=1000)
    return f"---\n{meta}---\n{source_text}"


def bundle(source_dir: Path, corpus_dir: Path) -> list[Path]:
    entries = load_manifest(corpus_dir / MANIFEST)
    out_dir = corpus_dir / "documents" / FOLDER
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in entries:
        source = (source_dir / entry.file).read_text(encoding="utf-8")
        target = out_dir / entry.file
        target.write_text(bundled_text(entry, source), encoding="utf-8")
        written.append(target)
    return written


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT.parent / "shared" / "sources" / "regulations"
    for path in bundle(src, REPO_ROOT / "corpus"):
        print(path)  # noqa: T201 - a maintenance script's output
