"""Embedding speed with 1 and with N worker processes, measured in one run.

`python bench/embed_workers.py [FILES or FOLDER ...] [--workers 2]`: reads the files like
`rag ingest` (rag.corpus.loaders, the normaliser, the parser, the chunker) and embeds every chunk
with e5-small, nothing cached (the cache is not used), once per worker count.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rag.corpus.chunk import embedding_text
from rag.corpus.loaders import load_files
from rag.corpus.titles import english_law_titles
from rag.index.embed_pool import embed_texts
from rag.index.ingest import build_chunks, document_from_file
from rag.settings import REPO_ROOT


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("paths", nargs="*", default=[str(REPO_ROOT.parent / "shared" / "local-regulations")])
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    loaded, _ = load_files(args.paths)
    loaded = [f for f in loaded if Path(f.path).name != "README.md"]
    english = english_law_titles()
    docs = [document_from_file(f, english)[0] for f in loaded]
    chunks, _, _ = build_chunks(docs, 400)
    texts = [embedding_text(c) for c in chunks]
    print(f"{len(docs)} files, {len(texts)} chunks")
    seconds = {}
    for workers in (1, args.workers):
        t = time.perf_counter()
        embed_texts(texts, "e5-small", workers=workers, progress=False)
        seconds[workers] = time.perf_counter() - t
        print(f"{workers} worker(s): {seconds[workers]:.1f} s ({len(texts) / seconds[workers]:.1f} chunks/s)")
    print(f"speed-up {args.workers} vs 1: {seconds[1] / seconds[args.workers]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
