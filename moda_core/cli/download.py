"""``moda download --source authors|hf [--repo ID] [FILE ...] --out DIR``: weights into one folder, ready to use."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "download", help="get the weights: the authors' release (Google Drive) or files of a Hugging Face repo",
        description="authors: the MODA, FaCo and Cathy renderer checkpoints and Cathy's repr.npz/reference.pth "
                    "from the authors' Google Drive (told apart by content), converted to moda .safetensors "
                    "(loaded strictly) with Cathy's subject imported. hf: the named files of a Hugging Face repo. "
                    "Interrupted downloads resume on the next run; one line per file says what was written; a "
                    "file that could not be fetched is an error naming its URL and the folder to put it in.")
    parser.add_argument("--source", choices=("authors", "hf"), required=True, help="where the files come from")
    parser.add_argument("--repo", default=None, help="Hugging Face repo id (owner/name), for --source hf")
    parser.add_argument("--revision", default="main", help="branch, tag or commit of the repo, for --source hf")
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="hf: files in the repo (sub-folders kept; default: moda.safetensors faco.safetensors "
                             "renderer.safetensors); authors: pick some of MODA.pkl, FaCo.pkl, "
                             "Cathy.pth, repr.npz, reference.pth (default: all)")
    parser.add_argument("--out", type=Path, default=None,
                        help="weights folder (default: $MODA_WEIGHTS_DIR or ~/.cache/moda/weights, where "
                             "`moda animate` looks)")
    parser.set_defaults(func=run)


class ByteBars:
    """One tqdm bar in bytes per file, driven by the download's progress(file, done, total) callback."""

    def __init__(self):
        self.bars = {}

    def __call__(self, name: str, done: int, total: int | None) -> None:
        from tqdm import tqdm

        bar = self.bars.get(name)
        if bar is None:
            bar = self.bars[name] = tqdm(total=total, desc=name, unit="B", unit_scale=True, leave=True,
                                         dynamic_ncols=True)
        if total and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def run(args: argparse.Namespace) -> int:
    from moda_core.download import SUBJECT_TARGET, check_request, download_weights
    from moda_core.pipeline import WEIGHT_FILES, default_weights_dir

    repo = args.repo or ""
    files = args.files or (list(WEIGHT_FILES.values()) if args.source == "hf" else [])
    problems = check_request(args.source, repo, files, args.revision)
    if problems:
        options = {"repo_id": "--repo", "filenames": "FILE", "revision": "--revision"}
        raise ValueError("; ".join(f"{options.get(name, name)}: {message}" for name, message in problems))
    out = args.out if args.out is not None else default_weights_dir()
    bars = ByteBars()
    try:
        outcome = download_weights(args.source, out, repo_id=repo, files=files, revision=args.revision,
                                   progress=bars)
    finally:
        bars.close()
    for line in outcome.lines:
        print(line)
    subject = out / SUBJECT_TARGET
    if args.source == "authors" and subject in outcome.paths:
        print(f"next: moda animate --weights {out} --subject {subject} --audio AUDIO.wav --out talk.mp4")
    return 0
