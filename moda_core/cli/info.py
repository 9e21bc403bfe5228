"""``moda info [--tiny]``: parameter counts of every network; ``moda info FILE.safetensors``: what a file holds."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "info", help="parameter counts of the networks, or the contents of a .safetensors checkpoint",
        description="Without FILE: parameter counts of all networks in the authors' (paper) configs. "
                    "With FILE: kind, config and parameter count of a moda .safetensors checkpoint.")
    parser.add_argument("file", nargs="?", type=Path, help="a moda .safetensors checkpoint")
    parser.add_argument("--tiny", action="store_true", help="count the tiny test configs instead")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moda_core import checkpoints

    if args.file is not None:
        info = checkpoints.describe_checkpoint(args.file)
        print(f"{info.path}: {info.kind}, {info.num_parameters:,} parameters ({info.num_parameters / 1e6:.2f} M), "
              f"{info.num_tensors} tensors")
        print("config: " + json.dumps(info.config.to_dict(), indent=2, sort_keys=True))
        return 0

    print(f"{'network':<24} {'parameters':>14} {'M':>8}  config")
    for kind in checkpoints.KINDS:
        config_class, _ = checkpoints.model_classes(kind)
        config = config_class.tiny() if args.tiny else config_class()
        model = checkpoints.build_model(kind, config, device="meta")    # shapes only: instant
        count = checkpoints.count_parameters(model)
        note = "tiny" if args.tiny else "paper"
        audio_encoder = getattr(model, "audio_encoder", None)
        if audio_encoder is not None:
            note += f", incl. wav2vec2 {checkpoints.count_parameters(audio_encoder) / 1e6:.2f} M"
        print(f"{kind:<24} {count:>14,} {count / 1e6:>8.2f}  {note}")
    return 0
