"""Read user documents (.txt .md .docx .pdf .html) into plain text plus metadata.

`load_files` is what `rag ingest PATH...` calls: one bad file never stops the
batch, it comes back as a `Skipped` with a one-line reason that says what to
do. Text is returned decoded but not normalised; ingestion normalises it.
"""

from __future__ import annotations

import codecs
import datetime as dt
import logging
import os
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rag.errors import CorpusError

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".md", ".docx", ".pdf", ".html", ".htm")
_TEXT_SUFFIXES = (".txt", ".md")
# Targeted advice for formats people commonly try to add.
_CONVERT_HINTS = {
    **dict.fromkeys((".doc", ".wps", ".rtf", ".odt"), "open it and save it as .docx"),
    **dict.fromkeys((".xlsx", ".xls", ".csv"), "copy the text into a .docx or .txt file"),
    ".pptx": "export it as PDF",
}
# Limits against hostile files (documented in the README): a .docx is a zip whose
# parts may expand a thousandfold, a PDF may declare millions of pages.
MAX_DOCX_UNCOMPRESSED = 100_000_000  # bytes, all parts together
MAX_DOCX_RATIO = 200  # uncompressed / compressed size of the whole archive
MAX_PDF_PAGES = 2_000
MAX_TEXT_CHARS = 5_000_000  # characters of text from one file
_BAD_CHAR_SHARE = 0.01  # legitimate text has essentially no U+FFFD or control characters
_MAX_TITLE_CHARS = 60


@dataclass(frozen=True)
class LoadedFile:
    path: str
    title: str
    text: str  # decoded, not normalised; no front matter and no title-line markup
    date: str  # YYYY-MM-DD or ""
    issuer: str
    doc_type: str
    status: str
    short_title: str
    doc_id: str
    effective_date: str = ""
    english_title: str = ""


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str  # one line: what is wrong and what to do


def _ignored_in_folder(rel: Path) -> bool:
    # README.md describes a folder; ~$ files are Word's lock files, not documents.
    hidden = any(part.startswith(".") for part in rel.parts)
    return hidden or rel.name.lower() == "readme.md" or rel.name.startswith("~$")


def _unsupported(path: Path) -> CorpusError:
    suffix = path.suffix.lower() or "(no extension)"
    return CorpusError(
        f"unsupported file type {suffix} (supported: {' '.join(SUPPORTED_SUFFIXES)})",
        hint=_CONVERT_HINTS.get(suffix, "convert it to a supported format"),
    )


def collect_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[Skipped]]:
    """Expand files and folders (recursively, sorted) into the documents to load."""
    files: list[Path] = []
    skipped: list[Skipped] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key in seen:
            return
        seen.add(key)
        if path.suffix.lower() in SUPPORTED_SUFFIXES:
            files.append(path)
        else:
            skipped.append(Skipped(str(path), str(_unsupported(path))))

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = []
            for root, dirs, names in os.walk(path):
                dirs[:] = [d for d in dirs if not d.startswith(".")]  # prune .git etc.
                found += [Path(root, n) for n in names]
            for file in sorted(found, key=lambda p: p.relative_to(path).parts):
                if file.is_file() and not _ignored_in_folder(file.relative_to(path)):
                    add(file)
        elif path.is_file():
            add(path)
        elif path.exists():
            skipped.append(Skipped(str(path), "not a regular file — give a file or a folder"))
        else:
            skipped.append(Skipped(str(path), "no such file or folder — check the path"))
    return files, skipped


# Control characters other than tab and line breaks, and the replacement character.
_BAD_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffd]")


def _bad_char_share(text: str) -> float:
    return len(_BAD_CHARS.findall(text)) / max(len(text), 1)


def _candidate_decodings(data: bytes) -> Iterable[str]:
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: its BOM starts the same way
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            yield data[len(bom) :].decode(codec, errors="replace")
            return
    for codec in ("utf-8", "gb18030"):  # GB18030 is a superset of GBK and GB2312
        try:
            yield data.decode(codec)
        except UnicodeDecodeError:
            pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is not None:
        yield str(best)


def decode_bytes(data: bytes) -> str:
    """Decode a text file: BOM, strict UTF-8, GB18030, then charset-normalizer."""
    for text in _candidate_decodings(data):
        if _bad_char_share(text) <= _BAD_CHAR_SHARE:
            return text
    raise CorpusError(
        "cannot decode the text (unknown encoding or not a text file)",
        hint="save it as UTF-8 and add it again",
    )


_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S | re.M)
# A block between two --- lines is only front matter when it starts like YAML
# keys; otherwise it is prose between horizontal rules and must stay in the body.
_YAML_KEY_START = re.compile(r"\A\s*[A-Za-z_][\w-]*[ \t]*:")
_META_KEYS = ("title", "short_title", "issuer", "doc_type", "status", "date", "doc_id",
              "effective_date", "english_title")


def split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """YAML front matter → (known keys as strings, body). Bad YAML is logged and ignored."""
    m = _FRONT_MATTER.match(text)
    if not m or (m.group(1).strip() and not _YAML_KEY_START.match(m.group(1))):
        return {}, text
    body = text[m.end() :]
    try:
        data = yaml.safe_load(m.group(1))
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: an impossible date
        log.warning("front matter is not valid YAML, ignoring it: %s", str(exc).replace("\n", " "))
        return {}, body
    if not isinstance(data, dict):
        if data is not None:
            log.warning("front matter is not a mapping of keys to values, ignoring it")
        return {}, body
    if "doc_type" not in data and "type" in data:
        data["doc_type"] = data["type"]
    meta: dict[str, str] = {}
    for key in _META_KEYS:
        value: Any = data.get(key)
        if value is None:
            continue
        if key in ("date", "effective_date"):
            meta[key] = parse_date(value)
            if not meta[key]:
                log.warning("front matter date %r is not a date, ignoring it", value)
        else:
            meta[key] = str(value).strip()
    return meta, body


_DATE_ISO = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
_DATE_ZH = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日")
_DATE_IN_NAME = re.compile(r"[(（](\d{4})-(\d{2})-(\d{2})[)）]")
_DATE_SUFFIX = re.compile(r"\s*[(（]\d{4}-\d{2}-\d{2}[)）]\s*$")


def _ymd(year: str, month: str, day: str) -> str:
    try:
        return dt.date(int(year), int(month), int(day)).isoformat()
    except ValueError:  # 2025-02-30 and the like
        return ""


def parse_date(value: object) -> str:
    """A date object or a 2025-05-21 / 2025/5/21 / 2025年5月21日 string → YYYY-MM-DD or ""."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value).strip()
    m = _DATE_ISO.fullmatch(text) or _DATE_ZH.fullmatch(text)
    return _ymd(*m.groups()) if m else ""


def date_from_name(name: str) -> str:
    m = _DATE_IN_NAME.search(name)
    return _ymd(*m.groups()) if m else ""


def date_from_text(text: str, max_lines: int = 10) -> str:
    """The first 2025年5月21日-style date in the first non-empty lines."""
    lines = [line for line in text.splitlines() if line.strip()][:max_lines]
    for line in lines:
        for m in _DATE_ZH.finditer(line):
            if date := _ymd(*m.groups()):
                return date
    return ""


def title_from_name(path: Path) -> str:
    return _DATE_SUFFIX.sub("", path.stem).strip() or path.stem


def title_from_first_line(text: str) -> str:
    """The first non-empty line when it reads like a title, else ""."""
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        looks_like_title = (
            len(line) <= _MAX_TITLE_CHARS
            and "。" not in line
            and line[-1] not in "，,；;：:.!?！？"
            and any(ch.isalpha() for ch in line)
            and not _DATE_ZH.fullmatch(line)  # a date line is not a title
        )
        return line if looks_like_title else ""
    return ""


_COMMENT_LINE = re.compile(r"^[ \t]*<!--.*?-->[ \t]*(?:\r?\n|\Z)", re.S | re.M)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t\u3000]+|$)(.*?)(?:[ \t]+#+)?[ \t]*$")


def clean_markdown(text: str) -> tuple[str, str]:
    """Drop HTML comments and heading markers → (first level-1 heading, text without it)."""
    text = _COMMENT.sub("", _COMMENT_LINE.sub("", text))
    h1 = ""
    out: list[str] = []
    for line in text.splitlines():
        m = _HEADING.match(line)
        if m is None:
            out.append(line)
        elif m.group(1) == "#" and not h1 and m.group(2).strip():
            h1 = m.group(2).strip()  # the title line is metadata, not body text
        else:
            out.append(m.group(2))
    # Removed lines leave runs of blank lines; one blank line keeps the paragraph break.
    return h1, re.sub(r"\n{3,}", "\n\n", "\n".join(out))


def _trim_blank_lines(text: str) -> str:
    # Only whole blank lines: leading full-width indents are part of the text.
    return re.sub(r"\A(?:[ \t\u3000]*\r?\n)+", "", text).rstrip()


def check_content(suffix: str, data: bytes) -> None:
    """The bytes must be what the name says: a renamed file is refused, not parsed.
    (Binary data named .txt is left to the decoder, which says it cannot decode it.)"""
    is_zip, is_pdf = data.startswith(b"PK\x03\x04"), b"%PDF-" in data[:1024]
    if suffix == ".docx" and not is_zip:
        raise CorpusError("not a readable .docx file (its content is not a Word document)",
                          hint="save it from Word or LibreOffice as .docx, or give it its real extension")
    if suffix == ".pdf" and not is_pdf:
        raise CorpusError("not a readable PDF (its content is not a PDF)",
                          hint="export it as PDF again, or give it its real extension")
    if suffix not in (".docx", ".pdf") and (is_zip or is_pdf):
        kind = "a ZIP/Office file" if is_zip else "a PDF"
        raise CorpusError(f"the file is named {suffix} but holds {kind}, not text",
                          hint="give it its real extension")


def _check_zip_limits(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorpusError(f"not a readable .docx file ({type(exc).__name__})",
                          hint="open it in Word or LibreOffice and save it as .docx again") from exc
    compressed = max(1, path.stat().st_size)
    if expanded > MAX_DOCX_UNCOMPRESSED or expanded / compressed > MAX_DOCX_RATIO:
        raise CorpusError(
            f"the .docx expands to {expanded / 1e6:.0f} MB ({expanded / compressed:.0f}x its size); "
            f"the limits are {MAX_DOCX_UNCOMPRESSED / 1e6:.0f} MB and {MAX_DOCX_RATIO}x",
            hint="remove embedded media or split the document")


def _read_docx(path: Path) -> tuple[str, str]:
    """Paragraphs and table rows in document order → (Title-style paragraph, text)."""
    _check_zip_limits(path)
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise CorpusError(
            f"not a readable .docx file ({type(exc).__name__})",
            hint="open it in Word or LibreOffice and save it as .docx again",
        ) from exc
    lines: list[str] = []
    title = ""
    for child in document.element.body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            para = Paragraph(child, document)
            if not title and para.style is not None and para.style.name == "Title":
                title = para.text.strip()
            lines.append(para.text)
        elif tag == "tbl":
            for row in Table(child, document).rows:
                # Keyed by the XML cell: a merged cell repeats in row.cells.
                cells = {cell._tc: cell.text.strip() for cell in row.cells}
                lines.append(" ".join(text for text in cells.values() if text))
    return title, "\n".join(lines)


def _read_pdf(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(str(path))
        # An empty user password only restricts permissions; such PDFs open normally.
        locked = reader.is_encrypted and not reader.decrypt("")
        if not locked and len(reader.pages) > MAX_PDF_PAGES:
            raise CorpusError(f"the PDF has {len(reader.pages)} pages; the limit is {MAX_PDF_PAGES}",
                              hint="split it into smaller PDFs")
        pages = [] if locked else [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError, NotImplementedError) as exc:
        # pypdf reports corrupt files with a variety of exception types.
        raise CorpusError(
            f"not a readable PDF ({type(exc).__name__})",
            hint="open and re-save it with a PDF viewer, or export it again",
        ) from exc
    if locked:
        raise CorpusError(
            "the PDF is encrypted with a password",
            hint="save an unprotected copy (e.g. print to PDF) and add that",
        )
    text = "\n".join(pages)
    if not text.strip():
        raise CorpusError("the PDF has no text layer (scanned?)", hint="run OCR first")
    if _bad_char_share(text) > 0.1:
        raise CorpusError("the PDF text layer is garbled (broken fonts)", hint="run OCR first")
    return text


_HTML_DROP = ("script", "style", "nav", "noscript", "template", "svg", "iframe", "head")
_HTML_BLOCKS = (
    "p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "tr", "table", "ul", "ol",
    "section", "article", "main", "header", "footer", "aside", "blockquote", "pre",
    "dd", "dt", "dl", "figcaption", "address", "caption", "hr", "form",
)  # fmt: skip


def html_to_text(html: str) -> tuple[str, str]:
    """HTML → (title from <title> or the first <h1>, text with one line per block)."""
    from bs4 import BeautifulSoup
    from bs4.element import CData, NavigableString, PreformattedString

    soup = BeautifulSoup(html, "html.parser")
    title_tag, h1 = soup.find("title"), soup.find("h1")
    title = title_tag.get_text(" ", strip=True) if title_tag else ""
    if not title and h1:
        title = h1.get_text(" ", strip=True)
    for tag in soup.find_all(_HTML_DROP):
        tag.decompose()
    for string in soup.find_all(string=True):
        if isinstance(string, PreformattedString) and not isinstance(string, CData):
            string.extract()  # comments, doctype, processing instructions
        elif string.find_parent("pre") is None:
            # HTML whitespace is insignificant outside <pre>; layout comes from blocks.
            string.replace_with(re.sub(r"\s+", " ", str(string)))
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for cell in soup.find_all(("td", "th")):
        cell.append(" ")
    for block in soup.find_all(_HTML_BLOCKS):
        block.insert_before(NavigableString("\n"))
        block.append(NavigableString("\n"))
    lines = (line.strip() for line in soup.get_text().splitlines())
    return title, "\n".join(line for line in lines if line)


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise CorpusError(
                f"file too large ({size / 1e6:.1f} MB > {max_bytes / 1e6:.1f} MB)",
                hint="split it into smaller files",
            )
        return path.read_bytes()
    except OSError as exc:
        raise CorpusError(
            f"cannot read the file ({exc.strerror or exc})",
            hint="check that it exists and is readable",
        ) from exc


def load_file(path: str | Path, *, max_bytes: int = 20_000_000) -> LoadedFile:
    """Load one document; raises CorpusError (with a hint) when it cannot be used."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise _unsupported(path)
    data = _read_bytes(path, max_bytes)
    if not data.strip():
        raise CorpusError("the file is empty", hint="add text to it or leave it out")
    check_content(".html" if suffix == ".htm" else suffix, data)
    meta: dict[str, str] = {}
    title = ""
    if suffix in _TEXT_SUFFIXES:
        meta, body = split_front_matter(decode_bytes(data))
        title, text = clean_markdown(body)
    elif suffix == ".docx":
        title, text = _read_docx(path)
    elif suffix == ".pdf":
        text = _read_pdf(path)
    else:
        title, text = html_to_text(decode_bytes(data))
    text = _trim_blank_lines(text)
    if not text.strip():
        raise CorpusError("the file has no text", hint="add text to it or leave it out")
    if len(text) > MAX_TEXT_CHARS:
        raise CorpusError(f"the file holds {len(text):,} characters of text; the limit is {MAX_TEXT_CHARS:,}",
                          hint="split it into smaller files")
    return LoadedFile(
        path=str(path),
        title=meta.get("title") or title or title_from_first_line(text) or title_from_name(path),
        text=text,
        date=meta.get("date") or date_from_name(path.name) or date_from_text(text),
        issuer=meta.get("issuer", ""),
        doc_type=meta.get("doc_type", ""),
        status=meta.get("status", ""),
        short_title=meta.get("short_title", ""),
        doc_id=meta.get("doc_id", ""),
        effective_date=meta.get("effective_date", ""),
        english_title=meta.get("english_title", ""),
    )


def load_files(
    paths: Iterable[str | Path], *, max_bytes: int = 20_000_000
) -> tuple[list[LoadedFile], list[Skipped]]:
    """Load every document under `paths`; a bad file is skipped with its reason."""
    files, skipped = collect_files(paths)
    loaded: list[LoadedFile] = []
    for path in files:
        try:
            loaded.append(load_file(path, max_bytes=max_bytes))
        except CorpusError as exc:
            skipped.append(Skipped(str(path), str(exc)))
        except Exception as exc:  # a parser bug on one file must not stop the batch
            log.exception("unexpected error while loading %s", path)
            skipped.append(
                Skipped(str(path), f"could not be read ({type(exc).__name__}) — check the file")
            )
    for item in skipped:
        log.info("skipped %s: %s", item.path, item.reason)
    return loaded, skipped
