"""The library stands without its CLI: nothing outside edgeano/cli/ imports edgeano.cli or click
(progress and results go through `logging`, which the CLI prints; edgeano.cli.common.console_logging)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import edgeano

PKG = Path(edgeano.__file__).resolve().parent


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_library_does_not_import_the_cli():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        if "cli" in path.relative_to(PKG).parts:
            continue
        for mod in _imports(path):
            if mod == "click" or mod.startswith(("click.", "edgeano.cli")):
                bad.append(f"{path.relative_to(PKG.parent)} imports {mod}")
    assert not bad, "\n".join(bad)


def test_console_logging_prints_library_records(capsys):
    from edgeano.cli.common import console_logging

    console_logging()
    console_logging()  # idempotent: one handler, each line once
    logging.getLogger("edgeano.train.gaussian").info("wrote x.pt")
    logging.getLogger("edgeano.export.pipeline").warning("kept in FP32")
    out, err = capsys.readouterr()
    assert out == "wrote x.pt\n" and err == "warning: kept in FP32\n"
