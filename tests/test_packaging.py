"""Install metadata: every package and data folder declared, and a quiet `pip install`."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from rag.settings import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_folder_of_code_or_data_is_a_declared_package():
    """A stage package or data folder left out of [tool.setuptools] packages would be missing
    from a wheel while the editable install still works."""
    declared = set(PYPROJECT["tool"]["setuptools"]["packages"])
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    for top in ("rag", "ui"):
        for folder in [REPO_ROOT / top, *(p for p in (REPO_ROOT / top).rglob("*") if p.is_dir())]:
            files = [f for f in folder.iterdir() if f.is_file() and f.suffix != ".pyc"]
            if folder.name == "__pycache__" or not files:
                continue
            name = ".".join(folder.relative_to(REPO_ROOT).parts)
            assert name in declared, f"{name} holds files but is not in [tool.setuptools] packages"
            patterns = data.get(name, [])
            assert all(f.suffix == ".py" or any(f.match(p) for p in patterns) for f in files), \
                f"{name}: files not in package-data"


def test_building_the_package_prints_no_setuptools_warning(tmp_path):
    pytest.importorskip("setuptools")  # the build runs without isolation: offline, fast
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path), str(REPO_ROOT)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    output = res.stdout + res.stderr
    assert "BuildBackendWarning" not in output and "SetuptoolsDeprecationWarning" not in output
