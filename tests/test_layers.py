"""The import direction of `edi/` (docs/architecture.md): stages import downward only.

    application (cli, serve, worker, pipeline, queries, gen)
      -> ingest -> validate -> route -> reports
      -> lower layer (config, db, log, spool, finding, interfaces, invoice, lifecycle, lease,
         partners, trace)

A module may import its own layer and any layer below it, never one above. The test reads the
imports of every module with `ast` (no import is executed), so it also sees imports inside
functions, which is where an upward import would hide.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "edi"

# Highest first; a module may import from its own rank or a higher number.
RANKS = {"app": 0, "ingest": 1, "validate": 2, "route": 3, "reports": 4, "lower": 5}
STAGES = ("ingest", "validate", "route", "reports")
LOWER = {"config", "db", "log", "spool", "finding", "interfaces", "invoice", "lifecycle", "lease",
         "partners", "trace"}


def layer(module: str) -> str:
    """The layer of a dotted module name inside `edi`."""
    parts = module.split(".")
    if len(parts) == 1:  # the package itself
        return "app"
    head = parts[1]
    if head in STAGES:
        return head
    return "lower" if head in LOWER else "app"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, dotted edi module) for every import of an `edi` module in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "edi"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "edi":
                continue
            for alias in node.names:  # `from edi import spool` names a module
                candidate = f"{base}.{alias.name}"
                sub = PACKAGE.parent.joinpath(*candidate.split("."))
                is_module = sub.with_suffix(".py").exists() or (sub / "__init__.py").exists()
                found.append((node.lineno, candidate if is_module else base))
    return found


def violations() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mod = module_name(path)
        mine = RANKS[layer(mod)]
        for line, target in imports_of(path):
            theirs = layer(target)
            if target != "edi" and RANKS[theirs] < mine:
                out.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {mod} ({layer(mod)}) "
                           f"imports {target} ({theirs})")
    return out


def test_stages_import_downward_only():
    assert len(list(PACKAGE.rglob("*.py"))) > 20  # the real package was read
    assert violations() == []


@pytest.mark.parametrize("module, expected", [
    ("edi.cli.flows", "app"), ("edi.pipeline", "app"), ("edi.ingest.split", "ingest"),
    ("edi.validate.rules", "validate"), ("edi.route.routing", "route"),
    ("edi.reports.statut", "reports"), ("edi.spool", "lower"), ("edi.db.models", "lower"),
])
def test_layer_of_module(module, expected):
    assert layer(module) == expected


def test_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The checker itself must catch a violation, or a green test proves nothing."""
    fake = tmp_path / "edi"
    (fake / "route").mkdir(parents=True)
    (fake / "validate").mkdir()
    for p in (fake / "__init__.py", fake / "route" / "__init__.py", fake / "validate" / "__init__.py",
              fake / "validate" / "rules.py", fake / "spool.py"):
        p.write_text("")
    (fake / "route" / "routing.py").write_text(
        "from edi import spool\n\ndef f():\n    from edi.validate import rules\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    found = violations()
    assert len(found) == 1 and "edi.validate.rules" in found[0] and ":4:" in found[0]
