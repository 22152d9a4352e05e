"""One flag style for every command: options are written with underscores, as the config keys that W&B's agents
pass (``--results_dir``, ``--n_epochs``), and each is also taken with dashes (``--results-dir``, ``--n-epochs``):
:class:`ArgumentParser` is argparse's, reading either spelling of every option it has, however it was added."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EPILOG = "Every --option_name is also taken as --option-name."


def spelling(flag: str) -> str:
    """The style every command documents: ``--runs-per-gpu`` -> ``--runs_per_gpu``."""
    return "--" + flag[2:].replace("-", "_") if flag.startswith("--") else flag


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose long options each take the other spelling too (``-`` for ``_`` or back,
    abbreviations included where argparse allows them), without listing it in ``--help``. The spelling is read at
    parse time from the options the parser has then: those of argument groups, of helpers that add options later,
    and of subcommands (``add_subparsers`` makes them of this class)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("epilog", EPILOG)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        return super().parse_known_args(self.respelled(sys.argv[1:] if args is None else list(args)), namespace)

    def respelled(self, args: list[str]) -> list[str]:
        """``args`` with each long option this parser has under the other spelling written as it has it; other
        arguments (values, subcommands' options, unknown ones, everything after ``--``) unchanged."""
        known = {spelling(o): o for o in self._option_string_actions if o.startswith("--")}
        out = []
        for i, arg in enumerate(args):
            if arg == "--":
                return out + args[i:]
            flag, eq, value = arg.partition("=")
            if flag.startswith("--") and flag not in self._option_string_actions:
                flag = known.get(spelling(flag)) or self.abbreviated(flag, known)
            out.append(flag + eq + value)
        return out

    def abbreviated(self, flag: str, known: dict[str, str]) -> str:
        """An abbreviation of one option in the other spelling, as that option spells it (argparse then expands
        it); ``flag`` itself otherwise, for argparse to expand or refuse."""
        matches = [o for s, o in known.items() if s.startswith(spelling(flag))] if self.allow_abbrev else []
        return matches[0][:len(flag)] if len(matches) == 1 else flag
