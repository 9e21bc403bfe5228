"""``moda import-subject DIR [--out FILE] [--name NAME]``: the authors' subject folder -> subject file."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "import-subject", help="the authors' subject folder (repr.npz + reference.pth) -> subject .safetensors",
        description="Read an authors' subject folder (assets/data/meta_dir/<person>/ of the MODA release: repr.npz "
                    "with the template and mean head motion and shoulders, reference.pth with the reference image, "
                    "or reference.png instead) and write it as a moda subject file for `moda animate --subject` and "
                    "MODA Load Subject. reference.pth is read without running code from it.")
    parser.add_argument("folder", type=Path, help="folder holding repr.npz and reference.pth (or reference.png)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output .safetensors (default: FOLDER/subject.safetensors)")
    parser.add_argument("--name", default=None, help="name stored in the subject (default: the folder name)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moda_core.cli.checks import ArgumentError, check_input_folder

    out = args.out if args.out is not None else args.folder / "subject.safetensors"
    if out.suffix != ".safetensors":
        raise ArgumentError(f"--out must end in .safetensors, got {out}")
    if out.is_dir():
        raise ArgumentError(f"--out {out} is a folder; give a file name ending in .safetensors")
    check_input_folder(args.folder, "FOLDER")
    from moda_core.authors_subject import import_subject

    subject = import_subject(args.folder, name=args.name)          # everything is checked before anything is written
    out.parent.mkdir(parents=True, exist_ok=True)
    subject.save(out)
    size = subject.reference_image.shape
    print(f"moda import-subject: wrote {out} (subject {subject.name!r}: template 478 points, head scale "
          f"{float(subject.mean_head_pose[6]):.4f}, reference {size[1]}x{size[0]})")
    return 0
