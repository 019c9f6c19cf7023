"""``neurokd``: one entry point; subcommands mirror the stages of the flow.

The CLI only parses arguments and calls library functions (``neurokd.runs``, ``neurokd.pipeline``)
that notebooks call too. A NeurokdError becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator, List, Optional

from neurokd.errors import NeurokdError

from neurokd.cli.commands import COMMANDS, EXIT_USER_ERROR
from neurokd.cli.parser import build_parser

DATA_PARALLEL = ("demo", "train-teacher", "train-snn", "distill", "quantize", "convert")


def _data_parallel(args: argparse.Namespace) -> int:
    """The command as one of torchrun's processes (``neurokd.runtime``): process 0 as usual, the
    others silent, into a temporary run directory they delete."""
    import contextlib
    import shutil

    from neurokd import runtime

    if args.command not in DATA_PARALLEL:
        raise NeurokdError(f"{args.command} does not train; run it without torchrun (torchrun "
                           f"runs {', '.join(DATA_PARALLEL)} data-parallel)")
    w = runtime.init_distributed(getattr(args, "device", None) or "auto")
    try:
        if w.main:
            return COMMANDS[args.command](args)
        scratch = tempfile.mkdtemp(prefix=f"neurokd-rank{w.rank}-")
        try:
            args.out, args.force, args.no_progress = str(Path(scratch) / "run"), False, True
            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                return COMMANDS[args.command](args)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        runtime.shutdown_distributed()


def _run_command(args: argparse.Namespace) -> int:
    from neurokd.runtime import launched_by_torchrun

    try:
        if launched_by_torchrun():
            return _data_parallel(args)
        return COMMANDS[args.command](args)
    except NeurokdError as exc:
        if args.debug:
            raise
        print(f"neurokd: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except SystemExit as exc:  # neurokd never exits from inside a command: a user's code did
        if args.debug:
            raise
        print(f"neurokd: error: code loaded from a teacher's module or factory tried to exit "
              f"(sys.exit({exc.code!r})); stopped, nothing half-written was kept", file=sys.stderr)
        return EXIT_USER_ERROR
    except MemoryError:
        if args.debug:
            raise
        print("neurokd: error: ran out of memory; nothing half-written was kept (a smaller "
              "input, batch or window needs less)", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:  # an unexpected failure: one line unless --debug
        from neurokd.interrupts import interrupted

        if interrupted():  # a failure the signal caused: report the interruption, not an error
            raise KeyboardInterrupt from None
        if args.debug:
            raise
        print(f"neurokd: internal error: {type(exc).__name__}: {exc} (rerun with --debug for "
              "the traceback)", file=sys.stderr)
        return 1


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Warnings as one line each on stderr (once per message), not Python's two-line form with
    a source line. numpy's floating-point warnings and matplotlib's are not shown: every value
    neurokd saves is checked finite, and a plot's cosmetic complaints are no news to a user."""
    import warnings

    import numpy as np

    shown = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
        if text not in shown:
            shown.add(text)
            print(f"neurokd: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"numpy(\.|$)")
        warnings.filterwarnings("ignore", module=r"matplotlib(\.|$)")
        with np.errstate(all="ignore"):
            yield


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command. SIGINT, SIGTERM and SIGHUP (to the process or its group) unwind it like an
    error: run directories and files being written are removed, child processes (Lava's runtime,
    search workers) are stopped, and the exit status is 128 + the signal number (130 for Ctrl-C,
    143 for SIGTERM), with one line on stderr. See ``neurokd.interrupts``."""
    import signal

    from neurokd.interrupts import kill_descendants, signals_to_exceptions

    if hasattr(sys.stdout, "reconfigure") and not sys.stdout.line_buffering:
        sys.stdout.reconfigure(line_buffering=True)  # a file or a pipe gets each line as it is printed
    with signals_to_exceptions() as state, _one_line_warnings():
        try:
            args = build_parser().parse_args(argv)
            code: Optional[int] = _run_command(args)
            state.hold()  # the run is over: a signal from here on is only recorded
        except KeyboardInterrupt:
            state.hold()
            code = None
        if code is None or state.signum is not None:
            kill_descendants(state.keep)  # whatever a bounded stop left behind
            signum = state.signum or signal.SIGINT
            print(f"neurokd: interrupted ({signal.Signals(signum).name}); nothing half-written "
                  "was kept", file=sys.stderr)
            return 128 + signum
        return code


if __name__ == "__main__":
    raise SystemExit(main())
