"""moda_core.download and ``moda download``: the authors' Drive release (gdown stood in) and Hugging Face repos
(huggingface_hub stood in); nothing goes to the network. Plus the authors' .pkl/.pth used directly as --weights."""
from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from PIL import Image
from safetensors import safe_open

from moda_core import download as dl
from moda_core.checkpoints import authors_file_kind, converted_copy, load_model, save_model
from moda_core.models.faco import FaCoConfig, FaCoNet
from moda_core.models.moda import MODAConfig, MODANet
from moda_core.models.renderer import RendererConfig, RenderGenerator
from moda_core.pipeline import find_weight_file

TINY = {"moda": MODAConfig.tiny(), "faco": FaCoConfig.tiny(), "renderer": RendererConfig.tiny()}


# ---------------------------------------------------------------- the authors' files, tiny
def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def authors_payloads(parity_dir) -> dict[str, bytes]:
    """{kind: bytes} of the authors' five released files: tiny networks with the authors' key names (DataParallel
    ``module.`` prefix on FaCo, as training writes it) and Cathy's repr.npz/reference.pth from the parity capture."""
    torch.manual_seed(3)
    nets = {"moda": MODANet(TINY["moda"]), "faco": FaCoNet(TINY["faco"]), "renderer": RenderGenerator(TINY["renderer"])}
    payloads = {kind: _torch_bytes(net.state_dict()) for kind, net in nets.items()}
    payloads["faco"] = _torch_bytes({f"module.{k}": v for k, v in nets["faco"].state_dict().items()})
    with safe_open(str(parity_dir / "pipeline" / "pipeline_cathy.safetensors"), "pt") as handle:
        means = {key.removeprefix("subject."): handle.get_tensor(key).numpy() for key in handle.keys()
                 if key.startswith("subject.") and key != "subject.sub_info"}
    buffer = io.BytesIO()
    np.savez(buffer, **means)
    payloads["repr"] = buffer.getvalue()
    image = np.asarray(Image.open(parity_dir / "pipeline" / "cathy_reference.png").convert("RGB"))
    payloads["reference"] = _torch_bytes({"example_files": ["./data/crop_frames/cathy.png"], "examples": [image]})
    return payloads


class FakeDrive:
    """Stands in for ``gdown.download``: serves ``files`` {drive id: bytes} in chunks through a ``.part`` file
    beside ``output`` (gdown's names), renamed when complete; ``resume`` continues a ``.part`` file.
    ``cut`` {drive id: bytes}: the connection drops after that many bytes (once); ``offline``: no connection."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.cut, self.offline, self.calls = files, {}, False, []

    def __call__(self, *, id, output, quiet, resume, progress, **_):
        self.calls.append({"id": id, "resume": resume})
        if self.offline:
            error = requests.exceptions.ConnectionError("Failed to resolve 'drive.google.com'")
            if self.offline == "after retries":              # what gdown raises with retries=N
                from gdown.exceptions import DownloadError
                raise DownloadError(f"Download failed after 2 retries: {error}") from error
            raise error
        if id not in self.files:
            raise requests.exceptions.HTTPError("404 Client Error: Not Found")
        data, folder, base = self.files[id], os.path.dirname(output), os.path.basename(output)
        parts = [p for p in os.listdir(folder) if p.startswith(base) and p.endswith(".part")]
        part = os.path.join(folder, parts[0] if resume and parts else f"{base}abcdefgh.part")
        start = os.path.getsize(part) if os.path.exists(part) else 0
        self.calls[-1]["start"] = start
        stop = self.cut.pop(id, len(data))
        with open(part, "ab") as handle:
            for offset in range(start, stop, 4096):
                handle.write(data[offset:min(offset + 4096, stop)])
                progress(min(offset + 4096, stop), len(data))
        if stop < len(data):
            raise requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead")
        os.replace(part, output)
        return output


@pytest.fixture
def drive(monkeypatch, authors_payloads):
    import gdown

    ids = [f.drive_id for f in dl.AUTHORS_FILES]
    # the pairs are stored "the other way round" on purpose: the code must tell them apart by content
    fake = FakeDrive({ids[0]: authors_payloads["faco"], ids[1]: authors_payloads["moda"],
                      ids[2]: authors_payloads["renderer"], ids[3]: authors_payloads["reference"],
                      ids[4]: authors_payloads["repr"]})
    monkeypatch.setattr(gdown, "download", fake)
    return fake


def _authors(folder: Path, **kwargs) -> dl.Outcome:
    return dl.download_weights("authors", folder, configs=TINY, **kwargs)


# ---------------------------------------------------------------- authors' release
def test_authors_release_converted_and_placed(tmp_path, drive, parity_dir):
    progress = []
    outcome = _authors(tmp_path, progress=lambda *a: progress.append(a))
    expected = {"moda.safetensors", "faco.safetensors", "renderer/cathy.safetensors", "cathy/repr.npz",
                "cathy/reference.pth", "cathy/subject.safetensors"}
    assert {str(p.relative_to(tmp_path)) for p in outcome.paths} == expected
    assert len(outcome.lines) == 6 and all(str(p) in line for p, line in zip(outcome.paths, outcome.lines))
    assert "MODA network (the authors' MODA.pkl)" in outcome.text() and "Cathy's subject imported" in outcome.text()
    for kind in ("moda", "faco"):                            # converted strictly, values kept
        model = load_model(tmp_path / f"{kind}.safetensors", kind=kind)
        assert model.config == TINY[kind]
    faco_source = torch.load(io.BytesIO(drive.files[dl.AUTHORS_FILES[0].drive_id]), weights_only=True)
    faco = load_model(tmp_path / "faco.safetensors")
    assert torch.equal(faco.state_dict()["decoder.layers.0.weight"], faco_source["module.decoder.layers.0.weight"])
    assert load_model(tmp_path / "renderer" / "cathy.safetensors", kind="renderer").config.ngf == 2
    from moda_core.subject import Subject
    subject = Subject.load(tmp_path / "cathy" / "subject.safetensors")
    with safe_open(str(parity_dir / "pipeline" / "pipeline_cathy.safetensors"), "pt") as handle:
        assert np.array_equal(subject.template.numpy(), handle.get_tensor("subject.templete").numpy())
    assert {name for name, _, _ in progress} == {f.progress_name for f in dl.AUTHORS_FILES}
    assert len({f.progress_name for f in dl.AUTHORS_FILES}) == 5
    assert all(done <= total for _, done, total in progress)
    # nothing half-written or staged is left where the loaders look; the state folder only holds records
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.rglob("*.tmp*"))
    assert sorted(p.suffix for p in (tmp_path / dl.STAGING).iterdir()) == [".json"] * 5
    # a second run keeps what the first one made, without asking Drive
    calls = len(drive.calls)
    again = _authors(tmp_path)
    assert len(drive.calls) == calls and all(line.startswith("kept: ") for line in again.lines)
    # the subject file alone deleted: imported again from the kept repr.npz and reference.pth
    (tmp_path / dl.SUBJECT_TARGET).unlink()
    again = _authors(tmp_path)
    assert len(drive.calls) == calls and (tmp_path / dl.SUBJECT_TARGET).is_file()
    assert again.lines[-1].startswith(f"wrote: {tmp_path / dl.SUBJECT_TARGET} (Cathy's subject imported")


def test_authors_pairs_told_apart_by_content(tmp_path, authors_payloads):
    for kind, data in authors_payloads.items():
        path = tmp_path / f"file_{kind}"                     # no telling name or suffix
        path.write_bytes(data)
        assert dl.identify_authors_file(path) == kind
    assert authors_file_kind(tmp_path / "file_reference") is None


def test_identification_follows_the_official_key_layouts(tmp_path, reference_dir):
    layouts = json.loads((reference_dir / "official_state_dict_shapes.json").read_text())
    for section, kind in {"MODA": "moda", "FaCo": "faco", "Renderer": "renderer"}.items():
        path = tmp_path / section
        path.write_bytes(_torch_bytes({key: torch.zeros(1) for key in layouts[section]}))
        assert dl.identify_authors_file(path) == kind


@pytest.mark.parametrize("content,expected", [
    (b"<!DOCTYPE html><html>Google Drive - Quota exceeded</html>", "is a web page"),
    (b"PK\x03\x04 truncated", "is not a zip archive"),
])
def test_wrong_or_truncated_download_is_named_and_deleted(tmp_path, drive, content, expected):
    drive_id = dl.AUTHORS_FILES[2].drive_id
    drive.files[drive_id] = content
    with pytest.raises(dl.DownloadError, match=f"Drive file {drive_id} .*unusable.*{expected}.*run again"):
        _authors(tmp_path, files=["Cathy.pth"])
    assert not (tmp_path / dl.STAGING / drive_id).exists()
    assert not (tmp_path / "renderer").exists()


def test_damaged_subject_file_is_an_error_and_writes_no_subject(tmp_path, drive, authors_payloads):
    with np.load(io.BytesIO(authors_payloads["repr"])) as npz:
        means = {k: npz[k] for k in npz.files if k != "shoulder"}
    buffer = io.BytesIO()
    np.savez(buffer, **means)
    drive.files[dl.AUTHORS_FILES[4].drive_id] = buffer.getvalue()
    with pytest.raises(dl.DownloadError, match=r"Cathy's subject files in .*cathy do not import: .*shoulder"):
        _authors(tmp_path, files=["repr.npz"])
    assert not (tmp_path / "cathy" / "subject.safetensors").exists()


@pytest.mark.parametrize("swap,expected", [
    ({2: "faco"}, "holds the authors' faco file, expected renderer/Cathy.pth"),
    ({0: "moda"}, "both hold the authors' moda file"),
])
def test_unexpected_content_of_a_drive_file(tmp_path, drive, authors_payloads, swap, expected):
    for index, kind in swap.items():
        drive.files[dl.AUTHORS_FILES[index].drive_id] = authors_payloads[kind]
    with pytest.raises(dl.DownloadError, match=expected):
        _authors(tmp_path, files=["MODA.pkl", "Cathy.pth"])
    assert not any(p.suffix == ".safetensors" for p in tmp_path.rglob("*")), "nothing converted"


def test_cli_authors_download_says_what_was_written_and_what_next(tmp_path, drive, monkeypatch, capsys):
    from moda_core.cli import main

    real = dl.download_weights
    monkeypatch.setattr(dl, "download_weights", lambda *a, **k: real(*a, **{**k, "configs": TINY}))
    assert main(["download", "--source", "authors", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7 and lines[0].startswith("wrote: ")
    subject = tmp_path / "cathy" / "subject.safetensors"
    assert lines[-1] == f"next: moda animate --weights {tmp_path} --subject {subject} --audio AUDIO.wav --out talk.mp4"
    assert find_weight_file("renderer", tmp_path) == tmp_path / "renderer" / "cathy.safetensors"
    from moda_core.pipeline import MODAModels
    models = MODAModels.load(tmp_path)                  # what moda animate --weights loads
    assert (models.moda.config, models.faco.config, models.renderer.config) == (TINY["moda"], TINY["faco"],
                                                                                TINY["renderer"])


def test_authors_interrupted_then_resumed(tmp_path, drive, authors_payloads):
    moda_id = dl.AUTHORS_FILES[1].drive_id
    drive.cut[moda_id] = 12288
    with pytest.raises(dl.DownloadError) as raised:
        _authors(tmp_path, files=["MODA.pkl"])
    message = str(raised.value)
    assert "1 file(s) not downloaded from the authors' Google Drive" in message
    assert f"MODA.pkl or FaCo.pkl: https://drive.google.com/uc?id={moda_id} -> {tmp_path}{os.sep}" in message
    assert "run again to resume" in message
    parts = list((tmp_path / dl.STAGING).glob(f"{moda_id}*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size == 12288
    assert not (tmp_path / "moda.safetensors").exists() and not (tmp_path / "faco.safetensors").exists()
    outcome = _authors(tmp_path, files=["MODA.pkl"])
    resumed = [c for c in drive.calls if c["id"] == moda_id]
    assert [c["start"] for c in resumed] == [0, 12288] and all(c["resume"] for c in resumed)
    assert {p.name for p in outcome.paths} == {"moda.safetensors", "faco.safetensors"}
    assert load_model(tmp_path / "moda.safetensors", kind="moda").config == TINY["moda"]


def test_authors_file_gone_is_named_and_the_others_still_come(tmp_path, drive):
    gone = dl.AUTHORS_FILES[2]
    del drive.files[gone.drive_id]
    with pytest.raises(dl.DownloadError) as raised:
        _authors(tmp_path, files=["Cathy.pth", "MODA.pkl"])
    message = str(raised.value)
    assert message.startswith("1 file(s) not downloaded from the authors' Google Drive: HTTPError: 404 Client Error: "
                              "Not Found; Drive refused the file")
    assert f"  renderer/Cathy.pth: {gone.url} -> {tmp_path / 'renderer'}{os.sep}" in message
    assert sorted(c["id"] for c in drive.calls) == sorted(f.drive_id for f in dl.AUTHORS_FILES[:3])
    kept = dl.AUTHORS_FILES[0]
    assert f"Downloaded, kept in {tmp_path / dl.STAGING} for the next run: {kept.label} ({kept.drive_id})" in message
    assert not (tmp_path / "renderer").exists()
    drive.files[gone.drive_id] = b"PK not really"                  # the next run fetches only the missing file
    with pytest.raises(dl.DownloadError, match="unusable"):
        _authors(tmp_path, files=["Cathy.pth", "MODA.pkl"])
    assert [c["id"] for c in drive.calls[3:]] == [gone.drive_id]


@pytest.mark.parametrize("offline", [True, "after retries"])
def test_authors_offline_names_every_file_url_and_folder(tmp_path, drive, offline):
    drive.offline = offline
    (tmp_path / "moda.safetensors").write_bytes(b"an older file")
    with pytest.raises(dl.DownloadError) as raised:
        _authors(tmp_path)
    message = str(raised.value)
    assert message.startswith("5 file(s) not downloaded from the authors' Google Drive: Google Drive could not be "
                              "reached (")
    assert "Failed to resolve 'drive.google.com')." in message.splitlines()[0]
    for drive_file, folder in zip(dl.AUTHORS_FILES, ["", "", "renderer", "cathy", "cathy"]):
        assert f"  {drive_file.label}: {drive_file.url} -> {tmp_path / folder if folder else tmp_path}{os.sep}" \
            in message
    assert len(drive.calls) == 1, "after the first unreachable file the others are not tried"
    assert (tmp_path / "moda.safetensors").read_bytes() == b"an older file"


# ---------------------------------------------------------------- Hugging Face
class FakeHub:
    """Stands in for huggingface_hub's ``get_hf_file_metadata`` (the reachability/existence check) and
    ``hf_hub_download`` (lock file + .incomplete under local_dir/.cache, sub-folders, progress, rename)."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.metadata_error, self.download_error, self.fallback = files, None, None, False
        self.downloads = []

    def metadata(self, url, **_):
        if self.metadata_error is not None:
            raise self.metadata_error
        name = url.split("/resolve/main/", 1)[1]
        if name not in self.files:
            from huggingface_hub import errors
            error = errors.RemoteEntryNotFoundError.__new__(errors.RemoteEntryNotFoundError)
            Exception.__init__(error, f"404 Client Error: Entry Not Found for url: {url}")
            raise error
        return object()

    def download(self, *, repo_id, filename, revision, local_dir, tqdm_class, **_):
        self.downloads.append(filename)
        target = Path(local_dir) / filename
        if self.fallback and target.is_file():
            logging.getLogger("huggingface_hub.file_download").warning(
                "Couldn't access the Hub to check for update but local file already exists. Defaulting to existing "
                "file. (error: ConnectError: [Errno -3] Temporary failure in name resolution)")
            return str(target)
        work = Path(local_dir) / ".cache" / "huggingface" / "download" / filename
        work.parent.mkdir(parents=True, exist_ok=True)
        (Path(local_dir) / ".cache" / "huggingface" / ".gitignore").write_text("*")
        lock, partial = Path(f"{work}.lock"), Path(f"{work}.incomplete")
        lock.touch()
        target.parent.mkdir(parents=True, exist_ok=True)
        data = self.files[filename]
        bar = tqdm_class(total=len(data), initial=0)
        partial.write_bytes(data[: len(data) // 2])
        bar.update(len(data) // 2)
        if self.download_error is not None:
            raise self.download_error
        partial.write_bytes(data)
        bar.update(len(data) - len(data) // 2)
        os.replace(partial, target)
        lock.unlink()
        return str(target)


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub

    fake = FakeHub({"moda.safetensors": b"m" * 3000, "renderer/cathy.safetensors": b"r" * 2000})
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", fake.metadata)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake.download)
    return fake


FILES = ["moda.safetensors", "renderer/cathy.safetensors"]


def _hf(folder, files=FILES, **kwargs):
    return dl.download_weights("hf", folder, repo_id="someone/moda-weights", files=files, **kwargs)


def test_hub_success_one_line_per_file(tmp_path, hub):
    progress = []
    outcome = _hf(tmp_path, progress=lambda *a: progress.append(a))
    assert outcome.paths == [tmp_path / "moda.safetensors", tmp_path / "renderer" / "cathy.safetensors"]
    assert outcome.lines[0] == f"downloaded: {tmp_path / 'moda.safetensors'} (0.0 MB, someone/moda-weights@main)"
    assert (tmp_path / "renderer" / "cathy.safetensors").read_bytes() == b"r" * 2000
    assert ("moda.safetensors", 1500, 3000) in progress and progress[-1] == ("renderer/cathy.safetensors", 2000, 2000)
    assert not (tmp_path / ".cache").exists(), "no lock files or empty folders are left"


def test_hub_local_copy_and_missing_repo_is_not_success(tmp_path, hub):
    from huggingface_hub import errors

    for name in FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"local")
    error = errors.RepositoryNotFoundError.__new__(errors.RepositoryNotFoundError)
    Exception.__init__(error, "401 Client Error: Repository Not Found")
    hub.metadata_error = error
    with pytest.raises(dl.DownloadError) as raised:
        _hf(tmp_path)
    message = str(raised.value)
    assert raised.value.input_name == "repo_id"
    assert message.startswith("2 file(s) not downloaded from https://huggingface.co/someone/moda-weights (revision "
                              "main): repo 'someone/moda-weights' not found, private or gated")
    assert (f"Same-name local copies exist but were NOT downloaded or checked now (the loaders will use them as they "
            f"are): {tmp_path / 'moda.safetensors'}, {tmp_path / 'renderer' / 'cathy.safetensors'}") in message
    assert hub.downloads == [], "the Hub client never gets to fall back to the local copies"


def test_hub_quiet_fallback_to_local_copy_is_caught(tmp_path, hub):
    (tmp_path / "moda.safetensors").write_bytes(b"local")
    hub.fallback = True
    with pytest.raises(dl.DownloadError, match="could not be reached .*Temporary failure in name resolution"):
        _hf(tmp_path, files=["moda.safetensors"])
    assert (tmp_path / "moda.safetensors").read_bytes() == b"local"


def test_hub_offline_one_message_every_file_and_its_folder(tmp_path, hub):
    hub.metadata_error = requests.exceptions.ConnectionError("Max retries exceeded (Failed to resolve host)")
    with pytest.raises(dl.DownloadError) as raised:
        _hf(tmp_path)
    lines = str(raised.value).splitlines()
    assert lines[0].startswith("2 file(s) not downloaded from https://huggingface.co/someone/moda-weights (revision "
                               "main): the Hugging Face Hub could not be reached (ConnectionError: Max retries")
    assert lines[2:] == [
        f"  moda.safetensors: https://huggingface.co/someone/moda-weights/resolve/main/moda.safetensors -> "
        f"{tmp_path}{os.sep}",
        f"  renderer/cathy.safetensors: https://huggingface.co/someone/moda-weights/resolve/main/renderer/"
        f"cathy.safetensors -> {tmp_path / 'renderer'}{os.sep}"]
    assert list(tmp_path.iterdir()) == []


def test_hub_failed_subfolder_download_leaves_no_locks_or_empty_folders(tmp_path, hub):
    hub.download_error = OSError("Connection reset by peer")
    with pytest.raises(dl.DownloadError) as raised:
        _hf(tmp_path, files=["renderer/cathy.safetensors"])
    assert f"-> {tmp_path / 'renderer'}{os.sep}" in str(raised.value) and "run again to resume" in str(raised.value)
    assert not (tmp_path / "renderer").exists()
    assert not list(tmp_path.rglob("*.lock"))
    left = [p for p in tmp_path.rglob("*")]
    assert all(p.is_file() or any(c.is_file() for c in p.rglob("*")) for p in left), "no empty folder"
    assert [p.name for p in tmp_path.rglob("*.incomplete")] == ["cathy.safetensors.incomplete"], "kept to resume"
    hub.download_error = None                           # the next run completes it
    assert _hf(tmp_path, files=["renderer/cathy.safetensors"]).paths == [tmp_path / "renderer" / "cathy.safetensors"]


def test_hub_missing_entry_names_the_file(tmp_path, hub):
    with pytest.raises(dl.DownloadError) as raised:
        _hf(tmp_path, files=["moda.safetensors", "nope.safetensors"])
    assert raised.value.input_name == "filenames"
    assert "1 file(s) not downloaded" in str(raised.value) and "nope.safetensors: https://huggingface.co/" in str(
        raised.value)
    assert f"Fetched: downloaded: {tmp_path / 'moda.safetensors'}" in str(raised.value)


@pytest.mark.parametrize("request_,problems", [
    (("hf", "", ["a.safetensors"], "main"), ["repo_id"]),
    (("hf", "owner/repo", [], ""), ["filenames", "revision"]),
    (("hf", "owner/repo", ["../x.safetensors"], "main"), ["filenames"]),
    (("hf", "owner/repo", ["a.safetensors", " "], "main"), ["filenames"]),
    (("authors", "", [], ""), []),
    (("authors", "", ["nothing.pkl"], "main"), ["filenames"]),
    (("gdrive", "", [], "main"), ["source"]),
])
def test_request_checks_name_each_input(request_, problems):
    assert [name for name, _ in dl.check_request(*request_)] == problems


def test_empty_file_name_is_not_said_to_leave_the_folder():
    assert dl.check_request("hf", "owner/repo", [" "], "main") == [
        ("filenames", "an empty file name; name each file by its path inside the repo")]


# ---------------------------------------------------------------- CLI
def test_cli_download_prints_one_line_per_file(tmp_path, hub):
    from moda_core.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["download", "--source", "hf", "--repo", "someone/moda-weights", *FILES, "--out",
                     str(tmp_path)]) == 0
    assert out.getvalue().splitlines() == [
        f"downloaded: {tmp_path / 'moda.safetensors'} (0.0 MB, someone/moda-weights@main)",
        f"downloaded: {tmp_path / 'renderer' / 'cathy.safetensors'} (0.0 MB, someone/moda-weights@main)"]


def test_cli_download_offline_is_an_error(tmp_path, drive, capsys):
    from moda_core.cli import main

    drive.offline = True
    assert main(["download", "--source", "authors", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moda download: error: 5 file(s) not downloaded from the authors' Google Drive")
    assert main(["download", "--source", "hf", "--out", str(tmp_path)]) == 2
    assert "--repo: '' is not a Hugging Face repo id" in capsys.readouterr().err


# ---------------------------------------------------------------- authors' files used directly
def test_weights_folder_takes_the_authors_files(tmp_path, authors_payloads, monkeypatch):
    """--weights pointing at the authors' ckpts layout: MODA.pkl/FaCo.pkl/renderer/Cathy.pth, converted once and
    cached beside them by content hash."""
    faco = FaCoNet(FaCoConfig())                       # the authors' size: convertible with the default config
    (tmp_path / "FaCo.pkl").write_bytes(_torch_bytes(faco.state_dict()))
    (tmp_path / "renderer").mkdir()
    save_model(RenderGenerator(TINY["renderer"]), tmp_path / "renderer" / "cathy.safetensors")
    from moda_core import checkpoints

    conversions = []
    real = checkpoints.convert_authors_checkpoint
    monkeypatch.setattr(checkpoints, "convert_authors_checkpoint",
                        lambda *a, **k: conversions.append(a[0]) or real(*a, **k))
    path = find_weight_file("faco", tmp_path)
    digest = checkpoints.content_hash(tmp_path / "FaCo.pkl")[:16]
    assert path == tmp_path / ".moda-converted" / f"FaCo-{digest}.safetensors"
    key = "decoder.layers.0.weight"
    assert torch.equal(load_model(path).state_dict()[key], faco.state_dict()[key])
    assert find_weight_file("faco", tmp_path) == path and len(conversions) == 1, "converted once"
    faco2 = FaCoNet(FaCoConfig())
    (tmp_path / "FaCo.pkl").write_bytes(_torch_bytes(faco2.state_dict()))
    changed = find_weight_file("faco", tmp_path)
    assert changed != path and not path.exists() and len(conversions) == 2, "a changed file converts anew"
    assert find_weight_file("renderer", tmp_path) == tmp_path / "renderer" / "cathy.safetensors"
    with pytest.raises(FileNotFoundError, match="missing moda weights: .*moda download --source authors"):
        find_weight_file("moda", tmp_path)


def test_converted_copy_refuses_code_in_the_pickle(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo ran > " + str(tmp_path / "ran"),))

    torch.save({"decoder.layers.0.weight": Payload()}, tmp_path / "FaCo.pkl")
    with pytest.raises(ValueError, match=r"FaCo\.pkl: .*(refused|Weights only load failed)"):
        converted_copy(tmp_path / "FaCo.pkl", kind="faco")
    assert not (tmp_path / "ran").exists() and not (tmp_path / ".moda-converted").exists()
    with zipfile.ZipFile(tmp_path / "FaCo.pkl") as archive:
        assert any(name.endswith("data.pkl") for name in archive.namelist())


def test_hub_connection_lost_after_the_check_is_not_a_missing_file(tmp_path, hub):
    from huggingface_hub import errors

    hub.download_error = errors.LocalEntryNotFoundError("An error happened while trying to locate the file on the "
                                                        "Hub and we cannot find the requested files in the local cache")
    with pytest.raises(dl.DownloadError) as raised:
        _hf(tmp_path)
    message = str(raised.value)
    assert raised.value.input_name == "repo_id" and "not in someone/moda-weights" not in message
    assert message.startswith("2 file(s) not downloaded from https://huggingface.co/someone/moda-weights (revision "
                              "main): the Hugging Face Hub could not be reached (LocalEntryNotFoundError: ")
    assert hub.downloads == ["moda.safetensors"], "the files after it are not tried"


def test_converted_copy_in_an_unwritable_place_says_how_to_convert(tmp_path):
    (tmp_path / "FaCo.pkl").write_bytes(_torch_bytes(FaCoNet(FaCoConfig()).state_dict()))
    (tmp_path / ".moda-converted").write_text("a file where the cache folder would go")
    with pytest.raises(ValueError, match=r"FaCo\.pkl: its conversion cannot be kept in .*\.moda-converted \(File "
                                         r"exists\); convert it once with `moda convert .*FaCo\.pkl --out"):
        converted_copy(tmp_path / "FaCo.pkl", kind="faco")
