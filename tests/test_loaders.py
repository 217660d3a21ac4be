"""Tests of rag.corpus.loaders on real files written to tmp_path (and the shared sample, if present)."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

from rag.corpus.loaders import (
    SUPPORTED_SUFFIXES,
    LoadedFile,
    clean_markdown,
    collect_files,
    date_from_text,
    decode_bytes,
    html_to_text,
    load_file,
    load_files,
    parse_date,
    split_front_matter,
    title_from_first_line,
    title_from_name,
)
from rag.errors import CorpusError

ZH = "第一条 为了规范外商投资管理，制定本条例。\n第二条 国家鼓励外商投资。"


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def shared_regulations() -> Path:
    base = os.environ.get("RAG_SHARED_DIR")
    shared = Path(base) if base else Path(__file__).resolve().parents[2] / "shared"
    return shared / "local-regulations"


# ---------------------------------------------------------------- PDF fixtures


def cjk_pdf(lines: list[str]) -> bytes:
    """A minimal PDF whose text is Chinese: a Type0 font with a ToUnicode CMap.

    No font program is embedded (nothing here needs to render), but the text
    layer is exactly what a PDF exported from a word processor carries.
    """
    chars = sorted({ch for line in lines for ch in line})
    cid = {ch: i + 1 for i, ch in enumerate(chars)}
    ops = ["BT", "/F1 14 Tf", "72 760 Td"]
    for line in lines:
        ops += ["<" + "".join(f"{cid[ch]:04X}" for ch in line) + "> Tj", "0 -24 Td"]
    ops.append("ET")
    content = "\n".join(ops).encode()
    bfchars = "\n".join(f"<{cid[ch]:04X}> <{ord(ch):04X}>" for ch in chars)
    cmap = (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
        "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
        f"{len(chars)} beginbfchar\n{bfchars}\nendbfchar\n"
        "endcmap\nCMapName currentdict /defineresource pop\nend\nend"
    ).encode()

    def stream(data: bytes) -> bytes:
        return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"

    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842]"
        b" /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        stream(content),
        b"<< /Type /Font /Subtype /Type0 /BaseFont /SimSun /Encoding /Identity-H"
        b" /DescendantFonts [6 0 R] /ToUnicode 7 0 R >>",
        b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /SimSun"
        b" /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >>"
        b" /DW 1000 >>",
        stream(cmap),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def matplotlib_pdf(path: Path, text: str | None) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 2))
    if text is None:
        fig.add_axes((0.1, 0.1, 0.8, 0.8)).set_axis_off()
        fig.axes[0].plot([0, 1], [0, 1])  # drawing only: what a scanned page looks like
    else:
        fig.text(0.05, 0.5, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="pdf")
    return path


# ---------------------------------------------------------------- encodings


def test_gb18030_chinese_txt_decodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import charset_normalizer

    def no_guessing(data: bytes) -> None:
        raise AssertionError("GB18030 must be tried before charset-normalizer guesses")

    monkeypatch.setattr(charset_normalizer, "from_bytes", no_guessing)
    text = "外商投资法实施条例\n" + ZH + "\n罕见字：𠀀䶮"  # 𠀀 needs GB18030's four-byte form
    data = text.encode("gb18030")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # otherwise the test would not exercise the fallback
    loaded = load_file(write(tmp_path / "gb.txt", data))
    assert loaded.text == text
    assert loaded.title == "外商投资法实施条例"


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-8-sig"])
def test_bom_encoded_chinese_txt_decodes(tmp_path: Path, codec: str) -> None:
    text = "优化营商环境条例\n" + ZH
    data = text.encode(codec)
    if codec == "utf-16-be":
        data = b"\xfe\xff" + data
    loaded = load_file(write(tmp_path / "bom.txt", data))
    assert loaded.text == text
    assert "\ufeff" not in loaded.text


def test_gbk_without_bom_and_charset_normalizer_fallback() -> None:
    assert (
        decode_bytes("中文内容，没有字节顺序标记。".encode("gbk")) == "中文内容，没有字节顺序标记。"
    )
    # UTF-16 without a BOM decodes "successfully" as UTF-8 full of NULs: must be rejected
    # there and found by charset-normalizer instead.
    text = "Plain English text that was saved as UTF-16 without a byte order mark. " * 5
    assert decode_bytes(text.encode("utf-16-le")) == text


def test_binary_file_cannot_be_decoded(tmp_path: Path) -> None:
    data = bytes(range(0, 9)) * 200 + b"\xff\xfe\x00\x81"
    with pytest.raises(CorpusError) as err:
        load_file(write(tmp_path / "binary.txt", b"\x00\x01" + data))
    assert "cannot decode" in err.value.message
    assert "UTF-8" in err.value.hint


def test_empty_and_blank_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path / "empty.txt", b"")
    write(tmp_path / "blank.md", "  \n\n\t\n")
    write(tmp_path / "only_front_matter.md", "---\ntitle: 空\n---\n\n")
    write(tmp_path / "ok.txt", ZH)
    loaded, skipped = load_files([tmp_path])
    assert [Path(f.path).name for f in loaded] == ["ok.txt"]
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert set(reasons) == {"empty.txt", "blank.md", "only_front_matter.md"}
    assert "empty" in reasons["empty.txt"]
    assert "no text" in reasons["only_front_matter.md"]


# ---------------------------------------------------------------- formats


def test_docx_paragraphs_and_table_rows_in_order(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("外资准入管理办法", level=0)
    document.add_paragraph("第一条 为了规范管理，制定本办法。")
    table = document.add_table(rows=3, cols=2)
    for r, row in enumerate([("项目", "期限"), ("核准", "20个工作日")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    table.cell(2, 0).merge(table.cell(2, 1)).text = "合并单元格只出现一次"
    document.add_paragraph("第二条 本办法自公布之日起施行。")
    document.save(str(tmp_path / "办法.docx"))

    loaded = load_file(tmp_path / "办法.docx")
    assert loaded.title == "外资准入管理办法"
    assert loaded.text.splitlines() == [
        "外资准入管理办法",
        "第一条 为了规范管理，制定本办法。",
        "项目 期限",
        "核准 20个工作日",
        "合并单元格只出现一次",
        "第二条 本办法自公布之日起施行。",
    ]


def test_corrupt_docx_is_skipped_with_reason(tmp_path: Path) -> None:
    write(tmp_path / "broken.docx", b"PK\x03\x04 this is not really a zip archive" * 10)
    loaded, skipped = load_files([tmp_path / "broken.docx"])
    assert loaded == []
    assert len(skipped) == 1 and skipped[0].path.endswith("broken.docx")
    assert ".docx" in skipped[0].reason and "save it" in skipped[0].reason


def test_chinese_pdf_text_layer(tmp_path: Path) -> None:
    lines = ["外商投资法实施条例", "第一条 根据外商投资法，制定本条例。"]
    loaded = load_file(write(tmp_path / "条例（2019-12-26）.pdf", cjk_pdf(lines)))
    assert [line.strip() for line in loaded.text.splitlines() if line.strip()] == lines
    assert loaded.title == "外商投资法实施条例"
    assert loaded.date == "2019-12-26"


def test_broken_pdf_is_skipped_and_the_folder_still_loads(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    matplotlib_pdf(folder / "english.pdf", "Foreign Investment Regulation Article 21")
    write(folder / "random.pdf", os.urandom(2048))
    write(folder / "notes.md", "# 说明\n\n正文。")
    loaded, skipped = load_files([folder])
    assert sorted(Path(f.path).name for f in loaded) == ["english.pdf", "notes.md"]
    english = next(f for f in loaded if f.path.endswith("english.pdf"))
    assert "Foreign Investment Regulation Article 21" in english.text
    assert [Path(s.path).name for s in skipped] == ["random.pdf"]
    assert "not a readable PDF" in skipped[0].reason and " — " in skipped[0].reason
    assert "\n" not in skipped[0].reason


def test_pdf_without_text_layer_says_run_ocr(tmp_path: Path) -> None:
    loaded, skipped = load_files([matplotlib_pdf(tmp_path / "scan.pdf", None)])
    assert loaded == []
    assert skipped[0].reason.endswith("no text layer (scanned?) — run OCR first")


def test_password_protected_pdf_is_skipped(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    plain = matplotlib_pdf(tmp_path / "plain.pdf", "Confidential text")
    for name, user_password in (("locked.pdf", "secret"), ("owner_only.pdf", "")):
        writer = PdfWriter(clone_from=PdfReader(plain))
        writer.encrypt(user_password, owner_password="owner", algorithm="AES-128")
        writer.write(tmp_path / name)
    loaded, skipped = load_files([tmp_path / "locked.pdf", tmp_path / "owner_only.pdf"])
    assert [Path(s.path).name for s in skipped] == ["locked.pdf"]
    assert "encrypted" in skipped[0].reason
    # Permission-only encryption (empty user password) opens like any PDF.
    assert [f.text for f in loaded] == ["Confidential text"]


def test_html_drops_scripts_and_keeps_blocks(tmp_path: Path) -> None:
    html = """<!DOCTYPE html><html><head><title>公平竞争审查条例</title>
    <style>p { color: red }</style><script>var leaked = "SCRIPT";</script></head>
    <body><nav><a href="/">首页</a> | <a href="/x">导航菜单</a></nav>
    <h1>公平竞争审查条例</h1>
    <p>第一条 为了规范<b>公平竞争</b>审查
       工作，制定本条例。</p><!-- a comment -->
    <div>第二条 起草单位<br>应当开展审查。</div>
    <table><tr><td>甲</td><td>乙</td></tr></table>
    <script>document.write("ALSO SCRIPT")</script></body></html>"""
    loaded = load_file(write(tmp_path / "page.html", html.encode("gb18030")))
    assert loaded.title == "公平竞争审查条例"
    assert loaded.text.splitlines() == [
        "公平竞争审查条例",
        "第一条 为了规范公平竞争审查 工作，制定本条例。",
        "第二条 起草单位",
        "应当开展审查。",
        "甲 乙",
    ]
    assert "SCRIPT" not in loaded.text and "导航" not in loaded.text


def test_html_title_falls_back_to_first_h1() -> None:
    title, text = html_to_text("<body><h2>附件</h2><h1>第一个标题</h1><h1>第二个</h1></body>")
    assert title == "第一个标题"
    assert text == "附件\n第一个标题\n第二个"


# ---------------------------------------------------------------- front matter


def test_front_matter_is_parsed_and_removed(tmp_path: Path) -> None:
    md = (
        "---\ntitle: 经开区改革工作方案\nshort_title: 工作方案\nissuer: 国务院办公厅\n"
        "type: 政策文件\nstatus: 现行有效\ndate: 2025-05-21\ndoc_id: etdz-plan\n"
        "unknown_key: ignored\n---\n# 不同的标题行\n\n正文第一段。\n"
    )
    loaded = load_file(write(tmp_path / "plan(2020-01-01).md", md))
    assert loaded == LoadedFile(
        path=str(tmp_path / "plan(2020-01-01).md"),
        title="经开区改革工作方案",
        text="正文第一段。",
        date="2025-05-21",
        issuer="国务院办公厅",
        doc_type="政策文件",
        status="现行有效",
        short_title="工作方案",
        doc_id="etdz-plan",
    )


def test_front_matter_doc_type_and_date_forms() -> None:
    meta, body = split_front_matter("---\ndoc_type: 法律\ntype: 其他\ndate: 2019年12月26日\n---\nx")
    assert meta == {"doc_type": "法律", "date": "2019-12-26"} and body == "x"
    assert parse_date("2025/5/21") == "2025-05-21"
    assert parse_date("2025-02-30") == ""


@pytest.mark.parametrize(
    "front",
    ["title: [unclosed\nissuer: x", "title: a\n  bad: indentation: here", "date: 2025-02-30"],
)
def test_bad_yaml_front_matter_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, front: str
) -> None:
    path = write(tmp_path / "通知(2024-03-01).md", f"---\n{front}\n---\n正文内容。\n")
    with caplog.at_level(logging.WARNING, logger="rag.corpus.loaders"):
        loaded = load_file(path)
    assert loaded.text == "正文内容。"
    assert (loaded.title, loaded.date, loaded.issuer) == ("通知", "2024-03-01", "")
    assert any(
        r.levelno == logging.WARNING and "front matter" in r.getMessage() for r in caplog.records
    )


def test_horizontal_rules_are_not_front_matter() -> None:
    text = "---\n这是一段正文，不是元数据。\n---\n后文"
    assert split_front_matter(text) == ({}, text)


# ---------------------------------------------------------------- title and date rules


def test_markdown_title_headings_and_comments() -> None:
    md = (
        "引言行\n# 中华人民共和国外商投资法实施条例\n\n<!-- INFO END -->\n\n## 第一章　总则\n\n"
        "第一条 内容。 <!-- x -->\n### 第一节 ###\n# 第二个一级标题\n#不是标题"
    )
    h1, text = clean_markdown(md)
    assert h1 == "中华人民共和国外商投资法实施条例"
    assert text.splitlines() == [
        "引言行",
        "",
        "第一章　总则",
        "",
        "第一条 内容。 ",
        "第一节",
        "第二个一级标题",
        "#不是标题",
    ]


@pytest.mark.parametrize(
    ("body", "title"),
    [
        ("关于印发工作方案的通知\n\n各省人民政府：", "关于印发工作方案的通知"),
        ("这是第一句。这是第二句\n", "name"),  # a sentence is not a title
        ("各省、自治区、直辖市人民政府：\n", "name"),  # ends like an address line
        ("很" * 61 + "\n", "name"),  # too long
        ("2025年5月21日\n正文", "name"),  # a date line is not a title
    ],
)
def test_title_from_first_line_or_file_name(tmp_path: Path, body: str, title: str) -> None:
    loaded = load_file(write(tmp_path / "name（2021-07-02）.txt", body))
    assert loaded.title == title
    assert loaded.date == "2021-07-02"


def test_title_helpers() -> None:
    assert title_from_name(Path("外商投资法实施条例(2019-12-26).md")) == "外商投资法实施条例"
    assert title_from_name(Path("(2019-12-26).md")) == "(2019-12-26)"
    assert title_from_first_line("\n\n  Short English Title  \nbody") == "Short English Title"


def test_date_from_first_ten_lines_only(tmp_path: Path) -> None:
    early = "标题\n\n2025年5月21日 国务院办公厅印发\n正文。"
    assert load_file(write(tmp_path / "early.txt", early)).date == "2025-05-21"
    late = "标题\n" + "正文。\n" * 10 + "2025年5月21日\n"
    assert load_file(write(tmp_path / "late.txt", late)).date == ""
    assert date_from_text("二〇二五年\n2019 年 12 月 26 日公布") == "2019-12-26"
    assert date_from_text("2025年2月30日\n2025年3月1日") == "2025-03-01"


# ---------------------------------------------------------------- collecting


def test_collect_files_walks_folders_and_reports_problems(tmp_path: Path) -> None:
    for name in ("c.md", "b.md", "e.htm", "d/f.md"):
        write(tmp_path / name, name)
    write(tmp_path / "a" / "z.TXT", "z")
    write(tmp_path / "a" / "README.md", "describes the folder")
    write(tmp_path / ".hidden.md", "x")
    write(tmp_path / ".git" / "notes.md", "x")
    write(tmp_path / "~$draft.docx", b"lock")
    write(tmp_path / "data.xlsx", b"PK")
    files, skipped = collect_files([tmp_path, tmp_path / "b.md", tmp_path / "missing.pdf"])
    assert [p.relative_to(tmp_path).as_posix() for p in files] == [
        "a/z.TXT",
        "b.md",
        "c.md",
        "d/f.md",
        "e.htm",
    ]
    assert [Path(s.path).name for s in skipped] == ["data.xlsx", "missing.pdf"]
    assert ".xlsx" in skipped[0].reason and "supported" in skipped[0].reason
    assert "no such file" in skipped[1].reason
    assert set(SUPPORTED_SUFFIXES) == {".txt", ".md", ".docx", ".pdf", ".html", ".htm"}


def test_unsupported_and_oversized_files_raise_corpus_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"\.xlsx") as err:
        load_file(write(tmp_path / "sheet.xlsx", b"PK"))
    assert err.value.hint
    with pytest.raises(CorpusError, match="too large"):
        load_file(write(tmp_path / "big.txt", "字" * 1000), max_bytes=100)


# ---------------------------------------------------------------- shared sample

EXPECTED_REGULATIONS = {
    "北京经济技术开发区条例.md": ("北京经济技术开发区条例", "1995-04-14"),
    "上海市经济技术开发区条例.md": ("上海市经济技术开发区条例", ""),
    "山东省经济开发区条例(2016-07-22).md": ("山东省经济开发区条例", "2016-07-22"),
    "河南省开发区条例(2010-07-30).md": ("河南省开发区条例", "2010-07-30"),
    "宁波大榭开发区条例(2013-06-14).md": ("宁波大榭开发区条例", "2013-06-14"),
}


def test_shared_regulations_load_with_titles_and_dates() -> None:
    folder = shared_regulations()
    if not folder.is_dir():
        pytest.skip(f"shared sample not found at {folder} (set RAG_SHARED_DIR)")
    loaded, skipped = load_files([folder])
    assert skipped == []  # README.md is ignored silently
    got = {Path(f.path).name: (f.title, f.date) for f in loaded}
    assert got == EXPECTED_REGULATIONS
    for f in loaded:
        assert f.text.startswith(("第一条", "第一章", "1", "2")), f.path
        assert "<!--" not in f.text and not re.search(r"^#", f.text, re.M)
        assert f.title not in f.text.splitlines()[:1]
    shanghai = next(f for f in loaded if f.path.endswith("上海市经济技术开发区条例.md"))
    assert "第一章　总则" in shanghai.text.splitlines()


def test_unexpected_parser_error_skips_only_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(html: str) -> tuple[str, str]:
        raise RuntimeError("parser bug")

    monkeypatch.setattr("rag.corpus.loaders.html_to_text", explode)
    write(tmp_path / "page.html", "<p>x</p>")
    write(tmp_path / "note.txt", ZH)
    loaded, skipped = load_files([tmp_path])
    assert [Path(f.path).name for f in loaded] == ["note.txt"]
    assert [(Path(s.path).name, "RuntimeError" in s.reason) for s in skipped] == [
        ("page.html", True)
    ]
