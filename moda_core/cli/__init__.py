"""The ``moda`` command. Each sub-command lives in its own module with ``register(subparsers)``."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

# modules under moda_core.cli, each with register(subparsers); heavy imports happen inside their run functions
SUBCOMMAND_MODULES = ["info", "preview", "animate", "convert", "prepare", "edit", "bench", "evaluate", "train", "quickstart",
                      "import_subject", "download"]


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default after its help unless the help already states it (or it is None/False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or default is None or default is False or default == argparse.SUPPRESS
                or default == [] or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose sub-commands (and theirs) show defaults in --help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="moda", description="MODA talking-portrait toolkit.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"moda_core.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``moda`` command. Run from a shell (``argv`` None), MediaPipe's native log lines are filtered out of
    stderr; SIGTERM stops a command like Ctrl-C (temporary files removed, training state saved)."""
    from moda_core.cli.checks import Terminated, sigterm_as_interrupt
    from moda_core.cli.native_logs import filtered_native_stderr, quiet_native_env

    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_native_env()
    with contextlib.ExitStack() as stack:
        stack.enter_context(sigterm_as_interrupt())
        if argv is None:
            stack.enter_context(filtered_native_stderr())
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt as err:
            terminated = isinstance(err, Terminated)
            print(f"moda {args.command}: {'stopped by SIGTERM' if terminated else 'interrupted'}", file=sys.stderr)
            return 143 if terminated else 130
        except (ValueError, OSError, RuntimeError) as err:
            print(f"moda {args.command}: error: {error_text(err)}", file=sys.stderr)
            return 2


def error_text(err: BaseException) -> str:
    """One line for an error: OSErrors (and PyAV's) without their ``[Errno N]`` prefix."""
    if getattr(err, "strerror", None) and str(err).startswith("[Errno"):
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    return str(err)


if __name__ == "__main__":
    raise SystemExit(main())
