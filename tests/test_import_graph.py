"""The package's import graph (tools/import_graph.py): no cycle, function-level and TYPE_CHECKING imports included."""

from __future__ import annotations

import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import import_graph  # noqa: E402


def test_cycles_are_found_through_any_path():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_graph.cycles(edges) == [["a", "b", "c"]]
    assert import_graph.cycles({"a": {"b"}, "b": set()}) == []


def test_function_level_imports_count(tmp_path, monkeypatch):
    pkg = tmp_path / "audiosweep"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from .high import g\n")
    (pkg / "high.py").write_text("from typing import TYPE_CHECKING\n"
                                 "if TYPE_CHECKING:\n    from audiosweep import low\n")
    monkeypatch.setattr(import_graph, "REPO", tmp_path)
    monkeypatch.setattr(import_graph, "PACKAGES", ("audiosweep",))
    edges = import_graph.graph()
    assert edges["audiosweep.low"] == {"audiosweep.high"} and edges["audiosweep.high"] == {"audiosweep.low"}
    assert import_graph.cycles(edges) == [["audiosweep.high", "audiosweep.low"]]


def test_the_package_has_no_import_cycle(capsys):
    assert import_graph.main([]) == 0, capsys.readouterr().out
