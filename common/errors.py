"""How every script reports an expected error: one short message, no traceback.

    from common import errors
    raise errors.UsageError("--head regression is for ordinal datasets; cassava is multiclass")
    raise errors.DataError(f"{path}: column 'label' is missing. Way out: ...")

    if __name__ == "__main__":
        errors.run_main("train.py", main)

An expected error is one a user can fix: a wrong path, a problem in a data or split file, an unknown model, missing
weights. It is printed as `prog: error: <message>` (the message names the file, the field, what is wrong and the way
out) and ends the script with exit status 2 (usage: the command line) or 1 (data: the files). Anything else is a
bug and keeps its traceback. Set TRANSFER_DEBUG=1 to see the traceback of an expected error too.

Under `accelerate launch` only the main process prints, until `report_from_every_rank()` (train.py calls it once its
processes read different shards): then an error raised on one rank alone is printed by that rank too. Accelerate's
single-process launcher turns any non-zero exit of its child into a traceback of its own (a `CalledProcessError`
repeating the command), which would bury the one useful line; so after reporting, the child stops that launcher with
SIGUSR1 (exit status 138 in a shell). Not SIGTERM: 143 means "stopped by SIGTERM, state saved, rerun to resume", and a
wrapper that requeues on it would retry a usage error forever. Several-process launches (torchrun) print their own
failure summary, which we leave alone.
"""
from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

DEBUG_VARIABLE = "TRANSFER_DEBUG"


class ExpectedError(Exception):
    """Base of every error a user can fix. `exit_status` is what the script exits with."""
    exit_status = 1


class DataError(ExpectedError):
    """The files are not as expected: dataset layout, split file, image, record, cache, weights."""
    exit_status = 1


class UsageError(ExpectedError):
    """The command line asks for something impossible or unknown."""
    exit_status = 2


class WeightsFileError(DataError, ValueError):
    """A weights file that does not exist, cannot be read, or does not fit the network it is loaded into."""


class WeightsUnavailableError(DataError, RuntimeError):
    """Pretrained weights were asked for but cannot be had (no network, nothing cached, no such weights); the
    message names what was looked for and the ways out."""


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a several-process launch (before or without an Accelerator)."""
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def launcher_command() -> str | None:
    """The command line of `accelerate launch` when it started this process, else None (Linux /proc only)."""
    if "ACCELERATE_MIXED_PRECISION" not in os.environ and "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return None
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    joined = " ".join(words)
    return joined if "accelerate" in joined and "launch" in joined else None


def _stop_single_process_launcher() -> None:
    if "TORCHELASTIC_RUN_ID" in os.environ or launcher_command() is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.kill(os.getppid(), signal.SIGUSR1)
    except OSError:
        pass


_every_rank = False


def report_from_every_rank() -> None:
    """Called once the processes work on different data (after the Accelerator starts): from then on an error seen
    by one rank alone (a bad image in its shard) must not vanish, so every rank reports, non-zero ranks prefixed."""
    global _every_rank
    _every_rank = True


def report(prog: str, error: BaseException) -> None:
    if is_main_process():
        print(f"{prog}: error: {error}", file=sys.stderr, flush=True)
    elif _every_rank:
        print(f"[rank {os.environ.get('RANK', os.environ.get('LOCAL_RANK'))}] {prog}: error: {error}",
              file=sys.stderr, flush=True)


def run_main(prog: str, main: Callable[[], int | None]) -> None:
    """Run `main()` and exit with its status; an expected error becomes one message and exit status 1 or 2."""
    try:
        status = main()
    except ExpectedError as error:
        if os.environ.get(DEBUG_VARIABLE):
            raise
        report(prog, error)
        _stop_single_process_launcher()
        sys.exit(error.exit_status)
    except BrokenPipeError:  # `grid.py plan | head`: the reader has gone, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush does not fail again
        sys.exit(141)  # as a shell reports a process ended by SIGPIPE
    sys.exit(status or 0)


def one_line(error: BaseException, limit: int = 600) -> str:
    """An exception as one line of a record: its type and message, whitespace collapsed, at most `limit` chars."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
