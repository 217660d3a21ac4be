"""Write the dev and test splits from eval/items/*.jsonl (the files people edit).

Within each source file, items are ordered by a hash of their id and dealt
alternately to dev and test, so both splits cover every file, language and
category, and an item never changes split when others are added. The items
about documents a user adds (items/local-regulations.jsonl) go to their own pair
of files, local-dev/local-test, because they run only when
../shared/local-regulations has been ingested.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

EVAL = Path(__file__).resolve().parent
LOCAL_ITEMS = "local-regulations"  # items on documents a user adds, not in the bundled corpus


def _key(item: dict) -> str:
    return hashlib.sha1(item["id"].encode("utf-8")).hexdigest()


def split() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"dev": [], "test": [], "local-dev": [], "local-test": []}
    for path in sorted((EVAL / "items").glob("*.jsonl")):
        items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        prefix = "local-" if path.stem == LOCAL_ITEMS else ""
        for group in sorted({(i["lang"], bool(i.get("history"))) for i in items}):
            members = sorted((i for i in items if (i["lang"], bool(i.get("history"))) == group), key=_key)
            for n, item in enumerate(members):
                out[prefix + ("dev" if n % 2 == 0 else "test")].append(item)
    return out


def main() -> None:
    for name, items in split().items():
        items.sort(key=lambda i: i["id"])
        text = "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items)
        (EVAL / f"{name}.jsonl").write_text(text, encoding="utf-8")
        print(f"{name}: {len(items)} items")


if __name__ == "__main__":
    main()
