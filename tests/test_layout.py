"""The house stays readable: small modules and functions, and a README whose settings table
is the settings object."""

from __future__ import annotations

import ast
import re
from dataclasses import MISSING, fields
from pathlib import Path

from rag.settings import _ENV, REPO_ROOT, Settings

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
# The meaning the README gives an empty or zero default.
SHOWN_AS = {"": "unset", "corpus_dir": "corpus/", "cache_dir": "~/.cache/etdz-rag"}


def _code_files() -> list[Path]:
    return sorted(p for top in ("rag", "ui") for p in (REPO_ROOT / top).rglob("*.py"))


def test_no_module_or_function_is_too_long():
    too_long = []
    for path in _code_files():
        source = path.read_text(encoding="utf-8")
        name = path.relative_to(REPO_ROOT)
        if source.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{name}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, "split these:\n" + "\n".join(too_long)


def _readme_settings() -> dict[str, str]:
    """variable → default cell of the README's settings table."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| variable | meaning | default |"):].split("\n\n")[0]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[-1]
    return rows


def _shown_default(name: str) -> str:
    f = next(f for f in fields(Settings) if f.name == name)
    if name in SHOWN_AS:
        return SHOWN_AS[name]
    value = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
    if value == "":
        return SHOWN_AS[""]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def test_readme_settings_table_is_the_settings_object():
    rows = _readme_settings()
    assert set(rows) == set(_ENV.values()), "README table ≠ settings: " + str(set(rows) ^ set(_ENV.values()))
    for name, var in _ENV.items():
        cell = rows[var]
        shown = re.match(r"`([^`]*)`|(\S+)", cell)
        assert shown is not None, var
        assert (shown.group(1) or shown.group(2)) == _shown_default(name), f"{var}: README says {cell!r}"
