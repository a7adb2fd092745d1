"""Command-line conventions every script shares: usage errors in one line, help texts that show each default exactly
once, the cores worker defaults may use, the check of interval settings."""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
from typing import Any, TypeVar

from common import errors

T = TypeVar("T")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Appends "(default: X)" to a flag's help, except for flags whose default is None (decided later, e.g. by the
    dataset: the help says how, in words) and switches (off unless given). The description (a script's docstring)
    keeps its line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)


def typed(cls: type[T], args: Any) -> T:
    """The parsed command line as the dataclass `cls` (every field taken from `args`; lists become tuples, so that
    frozen options hash and compare): how each script turns `args` into typed values, once."""
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(cls)}
    return cls(**{name: tuple(value) if isinstance(value, list) else value for name, value in values.items()})


def usable_cores() -> int:
    """The cores this process may run on (a Slurm job's share, not the whole machine's): what worker defaults use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_interval_settings(level: float, n_boot: int) -> None:
    """--level and --n-boot of the scripts that report intervals, checked before any compute."""
    if n_boot < 1 or not 0 < level < 1:
        raise errors.UsageError(f"--n-boot must be at least 1 (got {n_boot}) and --level within (0, 1) (got {level})")


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, but a usage error is one line: `prog: error: <message> (see prog --help)`, exit status 2.
    argparse's own prints the whole usage block (30 lines for train.py) before the error, which buries it; --help
    still shows everything. Sub-commands (grid.py plan, ...) get the same class, so their errors name them."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parser(description: str, **options: Any) -> ArgumentParser:
    """Every script's parser: one-line usage errors (ArgumentParser) and help that shows each default once."""
    return ArgumentParser(description=description, formatter_class=HelpFormatter, **options)


def without_flags(argv: tuple[str, ...] | list[str], flags: tuple[str, ...]) -> list[str]:
    """argv without `--flag value...` (and `--flag=value`) for each name in flags (underscores as dashes)."""
    names = {"--" + flag.replace("_", "-") for flag in flags}
    kept, skipping = [], False
    for token in argv:
        if token.startswith("--"):
            skipping = token.split("=", 1)[0] in names and "=" not in token
            if token.split("=", 1)[0] in names:
                continue
        elif skipping:
            continue
        kept.append(token)
    return kept


def flag_values(argv: tuple[str, ...] | list[str], flag: str) -> list[str]:
    """The values given to `--flag` in argv, as written."""
    name, values, inside = "--" + flag.replace("_", "-"), [], False
    for token in argv:
        if token.startswith("--"):
            inside = token == name
            if token.startswith(name + "="):
                values.append(token.split("=", 1)[1])
        elif inside:
            values.append(token)
    return values


# argparse types shared by the scripts

def whole_number(minimum: int, what: str = "a whole number"):
    """An argparse type: a whole number of `minimum` or more."""
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"'{text}' is not {what} of {minimum} or more")
        return int(text)
    return parse


positive_int, count = whole_number(1), whole_number(0)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive number")
    return value
