"""Chinese lexical search: jieba tokens (with the domain dictionary) scored by bm25s."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import threading
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.corpus.chunk import embedding_text
from rag.corpus.lexicon import DATA, expand_synonyms, stem_words, translate_terms, user_words
from rag.models import Chunk

log = logging.getLogger(__name__)

_STOP = set(
    "的 了 和 与 及 或 等 在 对 为 是 以 于 由 其 之 按照 依照 根据 应当 可以 不得 有关 相关 "
    "进行 规定 本法 条 款 项 第 中 上 下 并 将 被 从 向 把 也 都 而 且 即 若 如 则 就 所 "
    "吗 呢 吧 啊 么 什么 怎么 如何 哪些 是否 能否 能不能 可不可以 有没有 请问 我 我们 你 你们 "
    "a an the of to in on for and or is are be can do does what which how i my we our "
    "you your with by from at as it this that there any".split()
)
_TOKEN_OK = re.compile(r"[\w%]")
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    # The default tokenizer, shared with jieba.posseg (rag.corpus.places): a second
    # Tokenizer would load the 2-second dictionary a second time.
    tok = jieba.dt
    with _lock:
        tok.initialize()
        for word, freq in user_words():
            tok.add_word(word, freq)
    return tok


def warm_up() -> None:
    """Load jieba and the domain words ahead of the first question (called in a thread)."""
    from rag.corpus.places import place_names

    tokenize("国家级经开区")
    place_names("苏州")


def tokenize(text: str) -> list[str]:
    """Search-mode jieba tokens, lower-cased, stop words and punctuation removed."""
    tokens = []
    for tok in _jieba().lcut_for_search(text):
        tok = tok.strip().lower()
        if tok and tok not in _STOP and _TOKEN_OK.search(tok):
            tokens.append(tok)
    return tokens


def query_tokens(query: str) -> list[str]:
    """Tokens of the query plus synonym and English→Chinese glossary expansions."""
    return list(_query_tokens(query))


@lru_cache(maxsize=2048)
def _query_tokens(query: str) -> tuple[str, ...]:
    tokens = tokenize(query)
    for term in expand_synonyms(query) + translate_terms(query):
        tokens += tokenize(term)
    return tuple(dict.fromkeys(tokens))


class LexicalIndex:
    def __init__(self, chunk_ids: list[str], retriever) -> None:
        self.chunk_ids = chunk_ids
        self._retriever = retriever
        self._pos = {cid: i for i, cid in enumerate(chunk_ids)}

    def vocabulary(self) -> list[str]:
        return list(self._retriever.vocab_dict)

    def scores(self, tokens: list[str], mask: np.ndarray | None = None) -> np.ndarray:
        if not tokens:
            return np.zeros(len(self.chunk_ids), dtype=np.float32)
        vocab = self._retriever.vocab_dict
        known = [t for t in tokens if t in vocab]
        if not known:
            return np.zeros(len(self.chunk_ids), dtype=np.float32)
        scores = np.asarray(self._retriever.get_scores(known), dtype=np.float32)
        return scores * mask if mask is not None else scores

    def top(self, tokens: list[str], n: int, mask: np.ndarray | None = None) -> list[tuple[str, float]]:
        return self.ranked(self.scores(tokens, mask), n)

    def ranked(self, s: np.ndarray, n: int) -> list[tuple[str, float]]:
        """The n best (chunk id, score) of a score vector from `scores`, zeros left out."""
        if not s.any():
            return []
        order = np.argsort(-s)[:n]
        return [(self.chunk_ids[i], float(s[i])) for i in order if s[i] > 0]


def _index(token_lists: list[list[str]]):
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every build at DEBUG
    retriever = bm25s.BM25()
    retriever.index(token_lists, show_progress=False)
    return retriever


def build(chunks: list[Chunk]) -> LexicalIndex:
    return LexicalIndex([c.chunk_id for c in chunks], _index([tokenize(embedding_text(c)) for c in chunks]))


def fold_english(tokens: list[str] | tuple[str, ...]) -> list[str]:
    """English tokens folded to a crude stem (profits → profit), others unchanged."""
    out = []
    for t in tokens:
        if t.isascii() and t.isalpha():
            t = stem_words(t).strip() or t
        out.append(t)
    return out


def build_hook_field(texts: Mapping[tuple[str, int], str]) -> LexicalIndex:
    """The question hooks' lexical field: one document per clause (its hooks' text), English
    folded, each id naming its clause (`hook_field_clause` reads it back)."""
    keys = sorted(texts)
    return LexicalIndex([f"{d}\x00{o}" for d, o in keys], _index([fold_english(tokenize(texts[k])) for k in keys]))


def hook_field_clause(hook_id: str) -> tuple[str, int]:
    doc_id, _, ordinal = hook_id.rpartition("\x00")
    return (doc_id, int(ordinal))


def lexicon_fingerprint() -> str:
    """Changes when the jieba dictionary or synonym files change: the tokens change with them."""
    digest = hashlib.sha1()
    for name in ("userdict.txt", "synonyms.tsv"):
        path = DATA / name
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()


def build_and_save(chunks: list[Chunk], folder: Path, index: LexicalIndex | None = None) -> LexicalIndex:
    index = index or build(chunks)
    folder.mkdir(parents=True, exist_ok=True)
    index._retriever.save(str(folder), show_progress=False)
    (folder / "chunk_ids.json").write_text(json.dumps(index.chunk_ids), encoding="utf-8")
    (folder / "lexicon.sha1").write_text(lexicon_fingerprint(), encoding="utf-8")
    return index


def load(folder: Path) -> LexicalIndex | None:
    import bm25s

    ids_file = folder / "chunk_ids.json"
    stamp = folder / "lexicon.sha1"
    if not ids_file.exists() or not stamp.exists() or stamp.read_text(encoding="utf-8") != lexicon_fingerprint():
        return None
    try:
        retriever = bm25s.BM25.load(str(folder), show_progress=False)
        return LexicalIndex(json.loads(ids_file.read_text(encoding="utf-8")), retriever)
    except (OSError, ValueError) as exc:
        log.warning("lexical index at %s is unreadable (%s); rebuilding it", folder, exc)
        return None


def remove_other_builds(root: Path, keep: str) -> None:
    if root.exists():
        for child in root.iterdir():
            if child.is_dir() and child.name != keep:
                shutil.rmtree(child, ignore_errors=True)
