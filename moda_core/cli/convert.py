"""``moda convert SRC [--kind K] [--out DST] [--config JSON]``: authors' checkpoint -> our .safetensors format."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert an authors' .pkl/.pth checkpoint to a moda .safetensors file",
        description="Read an authors' state_dict (torch.load weights_only=True), load it strictly into the "
                    "matching network and write it in moda's .safetensors format.")
    parser.add_argument("src", type=Path, help="authors' checkpoint (e.g. MODA.pkl, FaCo.pkl, renderer/Cathy.pth)")
    parser.add_argument("--kind", help="network kind, e.g. moda, faco, renderer (default: detected from the keys)")
    parser.add_argument("--out", type=Path, help="output file (default: SRC with a .safetensors suffix)")
    parser.add_argument("--config", type=Path,
                        help="JSON file with the network config (config.to_dict()); default: the authors' config")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moda_core.cli.checks import ArgumentError, check_input_file, check_output_folder

    check_input_file(args.src, "SRC")
    check_input_file(args.config, "--config")
    check_output_folder((args.out or args.src).parent, "--out")
    from moda_core import checkpoints

    if args.kind is not None and args.kind not in checkpoints.KINDS:
        raise ArgumentError(f"--kind {args.kind!r} is not a network kind; use one of {', '.join(checkpoints.KINDS)}")

    config = None
    if args.config is not None:
        if args.kind is None:
            raise ValueError("--config needs --kind")
        config_class, _ = checkpoints.model_classes(args.kind)
        config = config_class.from_dict(json.loads(args.config.read_text()))
    written = checkpoints.convert_authors_checkpoint(args.src, args.out, kind=args.kind, config=config)
    info = checkpoints.describe_checkpoint(written)
    print(f"wrote {written} ({info.kind}, {info.num_parameters / 1e6:.2f} M parameters, "
          f"{info.num_tensors} tensors, {written.stat().st_size / 1e6:.1f} MB)")
    return 0
