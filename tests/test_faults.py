"""Faults a deployment meets, each with the promise it must keep: an ingest killed at
three points, a full disk, a damaged data dir or cache, an unwritable data dir.
The index in use keeps answering; the next ingest recovers to a clean build."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from rag.cli import main
from rag.errors import CorpusError, RagError
from rag.index import store
from rag.index.ingest import ingest
from rag.qa.assistant import Assistant
from rag.settings import REPO_ROOT, Settings


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, "RAG_DATA_DIR": str(settings.data_dir), "RAG_CACHE_DIR": str(settings.cache_dir),
            "RAG_CORPUS_DIR": str(settings.corpus_dir), "RAG_EMBEDDER": "hash", **extra}


def _collections(settings: Settings) -> set[str]:
    client = store.make_client(settings.data_dir)
    return {c if isinstance(c, str) else c.name for c in client.list_collections()}


def _active_names(settings: Settings) -> set[str]:
    info = store.active_info(store.make_client(settings.data_dir))
    assert info is not None
    return {store.REGISTRY, info.chunks_name, info.docs_name} | ({info.hooks_name} if info.hooks else set())


def _extra_doc(folder: Path, tag: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    # Many distinct clauses: the embedding step has more than one batch to do.
    articles = "\n".join(f"第{n}条 {tag}园区企业第{n}项事项按照本细则办理，编号{tag}{n}。" for n in range(1, 80))
    (folder / f"{tag}.md").write_text(f"# {tag}园区细则\n{articles}\n", encoding="utf-8")
    return folder


def _counts(summary) -> tuple[int, int, int]:
    return summary.documents, summary.clauses, summary.chunks


def test_killed_ingest_keeps_the_old_index_and_the_next_ingest_is_clean(hash_index, tmp_path):
    old = Assistant(hash_index)
    old_build, old_answer = old.info.build, old.ask("M0用地能建住宅吗？")
    extra = _extra_doc(tmp_path / "extra", "甲")
    for point in ("embedding", "chroma", "switch"):
        proc = subprocess.run([sys.executable, "-m", "rag.cli", "ingest", "--quiet", str(extra)], cwd=REPO_ROOT,
                              env=_env(hash_index, RAG_FAULT_KILL_AT=point), capture_output=True, timeout=120)
        assert proc.returncode == -9, (point, proc.stderr[-500:])
        # The killed ingest never switched: a fresh server loads the old build and answers alike.
        again = Assistant(hash_index)
        assert again.info.build == old_build, point
        answer = again.ask("M0用地能建住宅吗？")
        assert [c.label for c in answer.citations] == [c.label for c in old_answer.citations]
        if point != "embedding":
            assert _collections(hash_index) > _active_names(hash_index)  # the unfinished build is left over
    summary = ingest(hash_index, add_paths=[str(extra)], progress=False)
    assert summary.changed
    assert _collections(hash_index) == _active_names(hash_index)  # no leftover collections
    clean = replace(hash_index, data_dir=tmp_path / "clean")
    assert _counts(summary) == _counts(ingest(clean, add_paths=[str(extra)], progress=False))
    assert old.ask("甲园区企业第3项事项怎么办理？").question  # the running assistant switched too
    assert old.info.build != old_build


def test_disk_full_while_writing_leaves_the_index_in_use(hash_index, tmp_path, monkeypatch):
    before = Assistant(hash_index)
    build = before.info.build

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "write_build", full)
    with pytest.raises(CorpusError) as err:
        ingest(hash_index, add_paths=[str(_extra_doc(tmp_path / "x", "乙"))], progress=False)
    assert "disk is full" in err.value.message
    assert "free space" in err.value.hint and str(hash_index.data_dir.resolve()) in err.value.hint
    assert "unchanged" in err.value.hint
    monkeypatch.undo()
    after = Assistant(hash_index)
    assert after.info.build == build and after.ask("外商投资法第二十一条").citations
    assert _collections(hash_index) == _active_names(hash_index)


def test_disk_full_reported_as_text_by_sqlite_is_recognised():
    from rag.index.ingest import is_disk_full

    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as inner:
            raise RuntimeError("Chroma write failed") from inner
    except RuntimeError as exc:
        assert is_disk_full(exc)
    assert not is_disk_full(ValueError("bad input"))


def test_unwritable_data_dir_says_what_to_fix(hash_index, monkeypatch):
    import rag.index.ingest as ingest_module

    def denied(data_dir):
        raise PermissionError(errno.EACCES, "Permission denied", str(data_dir / "ingest.lock"))

    monkeypatch.setattr(ingest_module, "ingest_lock", denied)
    with pytest.raises(CorpusError) as err:
        ingest(hash_index, progress=False)
    assert "permission denied" in err.value.message and "RAG_DATA_DIR" in err.value.hint
    monkeypatch.undo()
    assert Assistant(hash_index).ask("外商投资法第二十一条").citations  # still serves


def _doctor(settings: Settings, monkeypatch, capsys) -> tuple[int, str]:
    for key, value in _env(settings).items():
        if key.startswith("RAG_"):
            monkeypatch.setenv(key, value)
    code = main(["doctor"])
    return code, capsys.readouterr().out


def test_deleted_collection_is_named_by_doctor_and_serve_and_rebuild_recovers(hash_index, monkeypatch, capsys):
    info = store.active_info(store.make_client(hash_index.data_dir))
    assert info is not None
    store.make_client(hash_index.data_dir).delete_collection(info.chunks_name)
    code, out = _doctor(hash_index, monkeypatch, capsys)
    assert code == 1 and f"FAIL index: the active index names collection {info.chunks_name}" in out
    assert "rag ingest --rebuild" in out
    with pytest.raises(RagError) as err:  # what `rag serve` prints as one line before it would start
        Assistant(hash_index)
    assert info.chunks_name in err.value.message and "--rebuild" in err.value.hint
    assert main(["serve", "--port", "1"]) == 2  # refuses before it listens, one line, no traceback
    serve_err = capsys.readouterr().err
    assert serve_err.startswith(f"error: the active index names collection {info.chunks_name}")
    assert "Traceback" not in serve_err and serve_err.count("\n") == 1
    ingest(hash_index, rebuild=True, progress=False)
    assert Assistant(hash_index).ask("外商投资法第二十一条").citations
    assert _doctor(hash_index, monkeypatch, capsys)[0] == 0


def test_corrupt_chroma_file_is_named_and_rebuild_moves_it_aside(hash_index, monkeypatch, capsys):
    db = hash_index.data_dir / "chroma" / "chroma.sqlite3"
    db.write_bytes(b"this is not a database" * 100)
    code, out = _doctor(hash_index, monkeypatch, capsys)
    assert code == 1 and "cannot be opened" in out and "rag ingest --rebuild" in out
    with pytest.raises(RagError):
        Assistant(hash_index)
    with pytest.raises(RagError):  # a plain ingest does not throw the damaged store away
        ingest(hash_index, progress=False)
    summary = ingest(hash_index, rebuild=True, progress=False)
    assert any("moved to" in w for w in summary.warnings)
    assert list(hash_index.data_dir.glob("chroma.damaged-*"))
    assert Assistant(hash_index).ask("外商投资法第二十一条").citations


def test_garbage_embedding_cache_is_reported_and_set_aside(hash_index, monkeypatch, capsys):
    cache = hash_index.cache_dir / "embeddings.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(str(cache) + suffix).unlink(missing_ok=True)
    cache.write_bytes(b"\x00garbage" * 1000)
    code, out = _doctor(hash_index, monkeypatch, capsys)
    assert code == 0 and "warn cache:" in out and "sets it aside" in out
    summary = ingest(hash_index, rebuild=True, progress=False)
    assert summary.changed  # vectors reused from the index: the cache only saves time
    assert cache.with_suffix(".corrupt").exists()
    assert "warn cache" not in _doctor(hash_index, monkeypatch, capsys)[1]
