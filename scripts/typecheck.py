"""Type-check modelbook with mypy under the module names the package is imported by.

pyproject.toml maps the package `modelbook` to core/, `modelbook.integrations` to integrations/
and `modelbook.server` to server/ ([tool.setuptools] package-dir). mypy names a module after its
folders, and the editable install is an import hook that mypy does not run, so neither
`mypy core server integrations` (modules `core.*`, and every `import modelbook...` unresolved)
nor `mypy -p modelbook` (package not found) checks the package as it is imported. This runs mypy
with [tool.mypy] from pyproject.toml, on the folders in its `files`, and gives each file the
module name that package-dir gives it, so errors still point at the real files.

    .venv/bin/python scripts/typecheck.py [mypy options]

Exit status as mypy's: 0 clean, 1 errors, 2 a blocking error (syntax, bad config).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # mypy itself needs tomli before 3.11
    import tomli as tomllib

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parent.parent


def package_dirs() -> dict[Path, str]:
    """Folder -> package name, from [tool.setuptools] package-dir."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mapping = config["tool"]["setuptools"]["package-dir"]
    return {(ROOT / folder).resolve(): package for package, folder in mapping.items()}


def module_name(path: Path, packages: dict[Path, str]) -> str:
    """The dotted name `path` is imported by: its deepest mapped folder, then subfolders."""
    path = path.resolve()
    for folder in sorted(packages, key=lambda p: len(p.parts), reverse=True):
        if folder in path.parents:
            parts = [packages[folder], *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join(parts)
    raise SystemExit(f"{path} is in no folder of [tool.setuptools] package-dir")


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    start = time.time()
    found, options = process_options(["--config-file", "pyproject.toml", *argv])
    packages = package_dirs()
    sources = [
        BuildSource(s.path, module_name(Path(s.path), packages), None) for s in found if s.path
    ]
    try:
        messages = build.build(sources, options).errors
        blocking = False
    except CompileError as e:
        messages, blocking = e.messages, True
    for line in messages:
        print(line)
    errors = [m for m in messages if ": error:" in m]
    files = {m.split(":", 1)[0] for m in errors}
    took = f"{time.time() - start:.1f}s"
    if errors:
        print(
            f"Found {len(errors)} error{'s' * (len(errors) != 1)} in {len(files)} "
            f"file{'s' * (len(files) != 1)} (checked {len(sources)} source files, {took})"
        )
    else:
        print(f"Success: no issues found in {len(sources)} source files ({took})")
    return 2 if blocking else 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
