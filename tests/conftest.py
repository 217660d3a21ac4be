"""Shared fixtures: real Chroma, the real bundled embedder, real corpora.

`tiny_settings` indexes the notice and two laws (fast); `full_assistant`
indexes the whole default corpus once per session into .rag-test/ (kept
between runs, so only the first run pays for the embeddings).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rag.settings import REPO_ROOT, Settings

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_LAWS = "laws:\n  - 中华人民共和国外商投资法\n  - 中华人民共和国土地管理法\n"


def shared_dir() -> Path:
    return Path(os.environ.get("RAG_SHARED_DIR", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def local_regulations_dir() -> Path:
    """Five local development-zone regulations: documents a user adds (never committed)."""
    path = shared_dir() / "local-regulations"
    if not path.is_dir():
        pytest.skip("../shared/local-regulations is not present")
    return path


@pytest.fixture(scope="session")
def seed_text() -> str:
    path = shared_dir() / "seed" / "notice-2025-05-21.raw.txt"
    if not path.exists():
        pytest.skip("../shared/seed is not present")
    return path.read_text(encoding="utf-8")


def make_tiny_corpus(root: Path) -> Path:
    corpus = root / "corpus"
    (corpus / "documents").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "corpus" / "documents" / "notice-2025-05-21.md", corpus / "documents")
    (corpus / "laws.yaml").write_text(TINY_LAWS, encoding="utf-8")
    return corpus


@pytest.fixture()
def hash_index(tmp_path) -> Settings:
    """A tiny index with the hash embedder and its own cache: fast, and safe to damage."""
    from rag.index.ingest import ingest

    settings = Settings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache",
                        corpus_dir=make_tiny_corpus(tmp_path), embedder="hash")
    ingest(settings, progress=False)
    return settings


@pytest.fixture(scope="session")
def tiny_settings(tmp_path_factory) -> Settings:
    from rag.index.ingest import ingest

    root = tmp_path_factory.mktemp("tiny")
    settings = Settings(data_dir=root / "data", corpus_dir=make_tiny_corpus(root))
    ingest(settings, progress=False)
    return settings


@pytest.fixture(scope="session")
def full_settings() -> Settings:
    from rag.index.ingest import ingest

    data_dir = Path(os.environ.get("RAG_TEST_DATA_DIR", REPO_ROOT / ".rag-test"))
    settings = Settings(data_dir=data_dir)
    ingest(settings, progress=False)
    return settings


@pytest.fixture(scope="session")
def full_assistant(full_settings):
    from rag.qa.assistant import Assistant

    return Assistant(full_settings)


FULL_INDEX_FIXTURES = {"full_settings", "full_assistant"}


def pytest_collection_modifyitems(config, items):
    """Every test that builds or reads the full default index is `slow`, whatever its file says:
    `-m "not slow"` then never builds it."""
    for item in items:
        if FULL_INDEX_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
