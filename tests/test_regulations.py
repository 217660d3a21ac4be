"""The seven State Council regulations users add themselves (read from ../shared)."""

from __future__ import annotations

import shutil
from dataclasses import replace

from rag.assistant import Assistant
from rag.ingest import ingest


def test_add_regulations_folder(tiny_settings, regulations_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_settings.data_dir, data)
    s = replace(tiny_settings, data_dir=data)
    summary = ingest(s, add_paths=[str(regulations_dir)], progress=False)
    assert len(summary.added) == 7 and not summary.skipped
    assert not [w for w in summary.warnings if "suspicious" in w]
    a = Assistant(s)
    docs = {d.short_title: d for d in a.documents()}
    reg = docs["外商投资法实施条例"]
    assert reg.doc_type == "行政法规" and reg.date == "2019-12-26" and reg.status == "现行有效"
    assert reg.clause_count == 49
    (art6,) = a.find("《外商投资法实施条例》第六条")
    assert art6.section_path == "第二章 投资促进 > 第六条" and "平等对待" in art6.text
    # 款 stay together in one article.
    (art4,) = a.find("《外商投资法实施条例》第四条")
    assert "适时调整负面清单" in art4.text
    r = a.ask("外商投资法实施条例第六条")
    assert r.citations[0].label == "《外商投资法实施条例》第六条"
    # The law itself is still 外商投资法, not its implementing regulation.
    assert a.ask("外商投资法第二十一条").citations[0].label == "《外商投资法》第二十一条"
