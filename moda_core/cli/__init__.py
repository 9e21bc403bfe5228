"""The ``moda`` command. Each sub-command lives in its own module with ``register(subparsers)``."""
from __future__ import annotations

import argparse
import importlib
import sys

# modules under moda_core.cli, each with register(subparsers); heavy imports happen inside their run functions
SUBCOMMAND_MODULES = ["info", "preview", "animate", "convert", "prepare", "edit", "bench", "evaluate", "train", "quickstart"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moda", description="MODA talking-portrait toolkit.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"moda_core.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("moda: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"moda {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
