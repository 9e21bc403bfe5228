"""The training loop every stage shares: epochs, budgets, validation, checkpoints, resume, CSV, progress, DDP.

A stage is a :class:`TrainingTask` (networks, optimisers, datasets, one train step, one validation step).
:func:`run_training` drives it and writes, for ``out_dir`` and a task named ``name``::

    out_dir/<kind>.safetensors          best weights by validation loss (kinds in ``task.exported``)
    out_dir/runs/<name>/losses.csv      one row per validation: epoch, step, seconds, train_* and val_* means
    out_dir/runs/<name>/last/           resumable state: every network (<kind>.safetensors) + state.pt
                                        (optimisers and counters; read with torch.load(weights_only=True))
    out_dir/runs/<name>/best/           every network (discriminators too) at the best validation

Runs resume from ``last/`` when it exists (``LoopConfig.resume``); Ctrl-C (or a :class:`TrainingCancelled` raised
by the ``on_step`` callback) saves ``last/`` before stopping. ``last/`` is replaced as a whole (written beside it,
then renamed), so a failed save (disk full) keeps the previous state.

Reproducible: every step's randomness (its batch's augmentation, noise in the step) comes from a seed derived
from (``seed``, rank, step), and a resumed run continues the epoch's shuffled order without drawing the batches it
skips, so stopping at step k and resuming to N gives the same weights as one run to N (``num_workers=0``).
Under ``torchrun --nproc_per_node N`` (environment variables ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``) the loop
starts a process group (NCCL on GPUs, gloo on CPUs), wraps the trained networks in DistributedDataParallel and
shards the data with DistributedSampler; rank 0 alone writes files and shows progress.
"""
from __future__ import annotations

import csv
import gc
import os
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from moda_core.checkpoints import build_model, describe_checkpoint, load_model, save_model
from moda_core.fileio import atomic_write

STATE_VERSION = 1


@dataclass(frozen=True)
class LoopConfig:
    """How long and how to train; the first budget reached stops the run (at least one must be set)."""

    max_steps: int | None = None         # optimiser steps in total (counting earlier runs when resuming)
    max_epochs: int | None = None
    max_minutes: float | None = None     # wall-clock budget of this invocation
    batch_size: int = 4                  # per process
    val_every: int = 1                   # epochs between validations (and checkpoints)
    seed: int = 0
    device: str = "auto"                 # "auto": cuda:<LOCAL_RANK> when available, else cpu
    num_workers: int = 0                 # DataLoader worker processes
    resume: bool = True                  # continue from out_dir/runs/<name>/last when present
    progress: bool = True                # tqdm bar with the latest losses
    slow_hint: str = ""                  # advice added to the first-step estimate when under an epoch fits
    save_every: int | None = None        # also save the resumable state every this many steps

    def __post_init__(self):
        if self.max_steps is None and self.max_epochs is None and self.max_minutes is None:
            raise ValueError("set at least one of max_steps, max_epochs, max_minutes")
        if self.batch_size < 1 or self.val_every < 1:
            raise ValueError(f"batch_size and val_every must be >= 1, got {self.batch_size}, {self.val_every}")
        if self.save_every is not None and self.save_every < 1:
            raise ValueError(f"save_every must be >= 1 or None, got {self.save_every}")


class TrainingCancelled(Exception):
    """Raised by an ``on_step`` callback of :func:`run_training` to stop: the loop saves ``last/`` and re-raises."""


class TrainingTask:
    """One training stage. Subclasses set the attributes below and implement the two step methods.

    ``networks``: checkpoint kind -> network (unwrapped); ``trained``: the kinds wrapped in DDP; ``exported``:
    kinds written to ``out_dir`` as the stage's result; ``optimizers``: name -> optimiser;
    ``min_batch_size``: smallest batch the networks accept in training (BatchNorm over samples needs 2);
    ``find_unused_parameters``: DDP's option, for networks whose steps may leave some parameters unused (a
    rank that skips one would otherwise never finish its gradient reduction and the ranks would drift apart).
    """

    name: str
    networks: dict[str, nn.Module]
    trained: tuple[str, ...]
    exported: tuple[str, ...]
    optimizers: dict[str, torch.optim.Optimizer]
    train_set: Dataset
    val_set: Dataset | None
    min_batch_size: int = 1
    find_unused_parameters: bool = False

    def __init__(self):
        self._parallel: dict[str, nn.Module] = {}
        self.device = torch.device("cpu")

    def to(self, device: torch.device) -> None:
        self.device = device
        for network in self.networks.values():
            network.to(device)

    def file_metadata(self, kind: str) -> dict[str, str]:
        """Extra metadata written into the weight file of ``kind`` (none by default)."""
        return {}

    def forward_module(self, kind: str) -> nn.Module:
        """The module train steps call for ``kind``: the network itself unless a subclass wraps it."""
        return self.networks[kind]

    def distribute(self, device: torch.device) -> None:
        """Wrap the trained forward modules in DistributedDataParallel (after :meth:`to`)."""
        ids = [device.index] if device.type == "cuda" else None
        self._parallel = {kind: DistributedDataParallel(self.forward_module(kind), device_ids=ids,
                                                        find_unused_parameters=self.find_unused_parameters)
                          for kind in self.trained}

    def undistribute(self) -> None:
        """Drop the DDP wrappers. Do it before the process group is destroyed: a DDP reducer freed later releases
        the group from a destructor that holds the GIL while gloo's threads may need it (a deadlock)."""
        self._parallel = {}
        gc.collect()                          # DDP objects sit in reference cycles

    def parallel(self, kind: str) -> nn.Module:
        """The module to call in a train step: the forward module, DDP-wrapped when distributed."""
        return self._parallel.get(kind) or self.forward_module(kind)

    def batch_to_device(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def optimise(self, name: str, loss: torch.Tensor) -> None:
        """Clear the gradients of optimiser ``name``, back-propagate ``loss`` and step."""
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def train_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """One optimisation step (all networks in train mode); returns the loss terms."""
        raise NotImplementedError

    def val_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Metrics of one batch (networks in eval mode, no grad); must contain ``loss`` (lower is better)."""
        raise NotImplementedError


@dataclass
class TrainResult:
    """What a run did. ``weights``: kind -> path of the exported best weights."""

    step: int
    epoch: int
    best_val: float | None
    best_step: int | None
    seconds: float
    weights: dict[str, Path]
    history: list[dict[str, float]] = field(default_factory=list)   # the CSV rows written by this invocation
    stopped_by: str = ""                                              # "steps", "epochs", "minutes"


@dataclass
class _Counters:
    step: int = 0
    epoch: int = 0
    epoch_step: int = 0                 # batches done in the current epoch (resuming mid-epoch)
    best_val: float | None = None
    best_step: int | None = None


# ----------------------------------------------------------------------------------------------- distributed
def _start_distributed() -> tuple[int, int, int, bool]:
    """(rank, world size, local rank, whether this call started the process group)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0, False
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), started


def _device(name: str, local_rank: int) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _reduce_means(sums: Mapping[str, float], count: float, device: torch.device, world: int) -> dict[str, float]:
    """Means of per-process sums over all processes."""
    names = sorted(sums)
    values = torch.tensor([sums[n] for n in names] + [count], dtype=torch.float64, device=device)
    if world > 1:
        dist.all_reduce(values)
    total = values[-1].item()
    return {n: values[i].item() / total for i, n in enumerate(names)} if total else {}


# ----------------------------------------------------------------------------------------------- checkpoints
def _save_networks(task: TrainingTask, folder: Path, kinds: Iterable[str] | None = None) -> None:
    """Write the networks of ``kinds`` (default: all) to ``folder/<kind>.safetensors``."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind in task.networks if kinds is None else kinds:
        save_model(task.networks[kind], folder / f"{kind}.safetensors", kind=kind,
                   extra_metadata=task.file_metadata(kind))


def _save_state(task: TrainingTask, folder: Path, counters: _Counters) -> None:
    """Write the networks and state.pt into ``folder`` as a whole: into ``<folder>.new``, then renamed, so an error
    while writing (disk full) keeps the previous ``folder``."""
    new, old = folder.with_name(folder.name + ".new"), folder.with_name(folder.name + ".old")
    shutil.rmtree(new, ignore_errors=True)
    try:
        _save_networks(task, new)
        state = {"version": STATE_VERSION, **asdict(counters),
                 "optimizers": {name: opt.state_dict() for name, opt in task.optimizers.items()}}
        atomic_write(new / "state.pt", lambda tmp: torch.save(state, tmp))
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(new, folder)
    shutil.rmtree(old, ignore_errors=True)


def state_folder(run_dir: str | os.PathLike) -> Path | None:
    """The resumable state of a run folder (``last/``, or ``last.old/`` when a save stopped between its two
    renames), or None."""
    for name in ("last", "last.old"):
        if (Path(run_dir) / name / "state.pt").is_file():
            return Path(run_dir) / name
    return None


def saved_step(run_dir: str | os.PathLike) -> int | None:
    """The step of the resumable state in ``run_dir``, or None when there is none."""
    folder = state_folder(run_dir)
    if folder is None:
        return None
    return int(torch.load(folder / "state.pt", map_location="cpu", weights_only=True)["step"])


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of one training step: a function of the run's seed, the process rank and the step only."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, rank, step]).generate_state(1, np.uint64)[0] >> 1)


def load_network_weights(network: nn.Module, path: Path, kind: str) -> None:
    """Load a file in moda's format into an existing network, strictly; its config must match the network's."""
    stored = describe_checkpoint(path)                  # header only: kind and config
    if stored.kind != kind:
        raise ValueError(f"{path}: holds a {stored.kind} network, expected {kind}")
    if stored.config != network.config:
        raise ValueError(f"{path} holds a {kind} network with a different config than this run's "
                         f"({stored.config} vs {network.config}); use another output folder or matching options")
    network.load_state_dict(load_file(str(path)), strict=True)


def initial_network(kind: str, config=None, init: str | os.PathLike | None = None) -> nn.Module:
    """A network to train: from ``config`` with random weights, or the weights in ``init`` (fine-tuning).

    With both, the file's config must equal ``config``.
    """
    if init is None:
        return build_model(kind, config)
    network = load_model(init, kind=kind).train()
    if config is not None and network.config != config:
        raise ValueError(f"{init} holds a {kind} network with config {network.config}, not the requested {config}")
    return network


def _restore_state(task: TrainingTask, folder: Path) -> _Counters:
    state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"{folder}/state.pt has state version {state.get('version')!r}; expected {STATE_VERSION}")
    for kind, network in task.networks.items():
        load_network_weights(network, folder / f"{kind}.safetensors", kind)
    for name, optimizer in task.optimizers.items():
        optimizer.load_state_dict(state["optimizers"][name])
    return _Counters(**{f.name: state[f.name] for f in fields(_Counters)})


class _CSVLog:
    """losses.csv: header from the first row written (kept when a resumed run appends)."""

    def __init__(self, path: Path):
        self.path = path
        self._fields: list[str] | None = None          # read from an existing file once

    def write(self, row: Mapping[str, float]) -> None:
        new = not self.path.exists()
        if new:
            self._fields = list(row)
        elif self._fields is None:
            with self.path.open(newline="") as handle:
                self._fields = next(csv.reader(handle))
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self._fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


# ----------------------------------------------------------------------------------------------- estimate
def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 172800 else f"{seconds / 86400:.1f} days"


def budget_estimate(name: str, step_seconds: float, steps_per_epoch: int, step: int, elapsed: float,
                    config: LoopConfig) -> str:
    """The line printed after a run's second step (the first one warms up): steps the run will still do at the
    measured speed under its budgets, their epochs and time (``step``: steps done, ``elapsed``: seconds of this
    run); ``config.slow_hint`` when the time budget ends it before one epoch or it would take over a day."""
    step_seconds = max(step_seconds, 1e-6)        # a coarse clock (Windows: ~16 ms) can measure a fast step as 0
    remaining = []
    if config.max_steps is not None:
        remaining.append(config.max_steps - step)
    if config.max_epochs is not None:
        remaining.append(config.max_epochs * steps_per_epoch - step)
    in_time = None
    if config.max_minutes is not None:
        in_time = int(max(0.0, 60.0 * config.max_minutes - elapsed) / step_seconds)
        remaining.append(in_time)
    steps = max(0, min(remaining))
    seconds = steps * step_seconds
    epochs = steps / steps_per_epoch
    text = (f"{name}: {step_seconds:.2f} s per step here: the budget leaves about {steps} more steps "
            f"({f'{epochs:.2f}' if epochs < 10 else f'{epochs:.0f}'} epochs of {steps_per_epoch} steps) in about "
            f"{_duration(seconds)}")
    if config.slow_hint and ((steps == in_time and steps + step < steps_per_epoch) or seconds > 86400):
        text += f". {config.slow_hint}"
    return text


# ----------------------------------------------------------------------------------------------- the loop
def _loader(dataset: Dataset, batch_size: int, sampler: DistributedSampler | list[int], drop_last: bool,
            config: LoopConfig, device: torch.device) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                      num_workers=config.num_workers, pin_memory=device.type == "cuda")


def _epoch_batches(dataset: Dataset, sampler: DistributedSampler, first_batch: int, batch_size: int,
                   drop_last: bool, config: LoopConfig, device: torch.device) -> Iterator:
    """The batches of the sampler's current epoch from batch ``first_batch`` on (earlier items are not read)."""
    indices = list(sampler)[first_batch * batch_size:]
    return iter(_loader(dataset, batch_size, indices, drop_last, config, device))


def _validate(task: TrainingTask, loader: Iterable, device: torch.device, world: int) -> dict[str, float]:
    for network in task.networks.values():
        network.eval()
    sums: dict[str, float] = defaultdict(float)
    count = 0
    with torch.no_grad():
        for batch in loader:
            size = len(next(iter(batch.values())))
            for name, value in task.val_step(task.batch_to_device(batch)).items():
                sums[name] += value * size
            count += size
    for network in task.networks.values():
        network.train()
    return _reduce_means(sums, count, device, world)


StepCallback = Callable[[int, Mapping[str, float]], None]


def run_training(task: TrainingTask, out_dir: str | os.PathLike, config: LoopConfig, *,
                 on_step: StepCallback | None = None) -> TrainResult:
    """Train ``task`` until a budget of ``config`` is reached; see the module docstring for the files.

    ``on_step(step, losses)`` runs on rank 0 after every step (``step`` counts earlier runs); it may raise
    :class:`TrainingCancelled` to stop with a saved state. It must not change the networks; any randomness it
    uses does not reach training (each step reseeds).
    """
    out_dir = Path(out_dir)
    run_dir = out_dir / "runs" / task.name
    rank, world, local_rank, started_group = _start_distributed()
    device = _device(config.device, local_rank)
    try:
        result = _run(task, out_dir, run_dir, config, rank, world, device, on_step)
        if world > 1:
            dist.barrier()                    # every rank returns after rank 0 has written its files
        return result
    finally:
        if world > 1:
            task.undistribute()
        if started_group:
            dist.destroy_process_group()


def _run(task: TrainingTask, out_dir: Path, run_dir: Path, config: LoopConfig, rank: int, world: int,
         device: torch.device, on_step: StepCallback | None) -> TrainResult:
    started = time.monotonic()
    task.to(device)
    counters = _Counters()
    saved = state_folder(run_dir) if config.resume else None
    if saved is not None:
        counters = _restore_state(task, saved)
    if world > 1:
        task.distribute(device)
    batch_size = min(config.batch_size, len(task.train_set) // world)
    if batch_size < task.min_batch_size:
        raise ValueError(f"{task.name}: {len(task.train_set)} training item(s) over {world} process(es) do not "
                         f"make a batch of {task.min_batch_size}; use more or longer clips, or a smaller window")
    sampler = DistributedSampler(task.train_set, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    drop_last = task.min_batch_size > 1
    loader = _loader(task.train_set, batch_size, sampler, drop_last, config, device)
    val_loader = None
    if task.val_set is not None and len(task.val_set):
        val_sampler = DistributedSampler(task.val_set, num_replicas=world, rank=rank, shuffle=False)
        val_loader = _loader(task.val_set, config.batch_size, val_sampler, False, config, device)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    log = _CSVLog(run_dir / "losses.csv") if rank == 0 else None
    history: list[dict[str, float]] = []
    sums: dict[str, float] = defaultdict(float)
    count = 0
    stopped_by = ""
    total = config.max_steps or (config.max_epochs * len(loader) if config.max_epochs else None)
    bar = tqdm(total=total, initial=counters.step, desc=task.name, unit="step", dynamic_ncols=True,
               disable=rank != 0 or not config.progress, leave=True)

    def out_of_budget() -> str:
        reason = ""
        if config.max_steps is not None and counters.step >= config.max_steps:
            reason = "steps"
        elif config.max_epochs is not None and counters.epoch >= config.max_epochs:
            reason = "epochs"
        elif config.max_minutes is not None and time.monotonic() - started >= 60.0 * config.max_minutes:
            reason = "minutes"
        if world > 1 and config.max_minutes is not None:      # ranks must agree on when to stop
            flag = torch.tensor([("", "steps", "epochs", "minutes").index(reason)], device=device)
            dist.broadcast(flag, 0)
            reason = ("", "steps", "epochs", "minutes")[int(flag)]
        return reason

    def validate_and_save() -> None:
        nonlocal sums, count
        row: dict[str, float] = {"epoch": counters.epoch, "step": counters.step,
                                 "seconds": round(time.monotonic() - started, 2)}
        row.update({f"train_{k}": v for k, v in _reduce_means(sums, count, device, world).items()})
        sums, count = defaultdict(float), 0
        if val_loader is not None:
            row.update({f"val_{k}": v for k, v in _validate(task, val_loader, device, world).items()})
        history.append(row)
        val = row.get("val_loss")
        improved = val is None or counters.best_val is None or val < counters.best_val
        if improved:                                           # same decision on every rank (reduced values)
            counters.best_val, counters.best_step = val, counters.step
        if rank != 0:
            return
        log.write(row)
        if improved:
            _save_networks(task, run_dir / "best")
            _save_networks(task, out_dir, task.exported)
        _save_state(task, run_dir / "last", counters)

    for network in task.networks.values():
        network.train()
    stepped_since_val = False
    run_steps = 0
    try:
        while not (stopped_by := out_of_budget()):
            sampler.set_epoch(counters.epoch)
            torch.manual_seed(step_seed(config.seed, rank, counters.step))
            batches = _epoch_batches(task.train_set, sampler, counters.epoch_step, batch_size, drop_last, config,
                                     device)
            for index in range(counters.epoch_step, len(loader)):
                torch.manual_seed(step_seed(config.seed, rank, counters.step))   # this step's randomness
                batch = next(batches)
                step_started = time.perf_counter()
                losses = task.train_step(task.batch_to_device(batch))
                run_steps += 1
                if rank == 0 and run_steps == 2:               # say what the budget allows at this speed
                    bar.write(budget_estimate(task.name, time.perf_counter() - step_started, len(loader),
                                              counters.step + 1, time.monotonic() - started, config), file=sys.stderr)
                counters.step += 1
                counters.epoch_step = index + 1
                stepped_since_val = True
                for name, value in losses.items():
                    sums[name] += value
                count += 1
                bar.update()
                bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
                if counters.epoch_step == len(loader):
                    counters.epoch += 1
                    counters.epoch_step = 0
                    if counters.epoch % config.val_every == 0:
                        validate_and_save()
                        stepped_since_val = False
                if rank == 0 and config.save_every and counters.step % config.save_every == 0:
                    _save_state(task, run_dir / "last", counters)
                if on_step is not None and rank == 0:
                    on_step(counters.step, losses)
                if stopped_by := out_of_budget():
                    break
            if stopped_by:
                break
        if stepped_since_val or counters.best_step is None:
            validate_and_save()
    except (KeyboardInterrupt, TrainingCancelled):
        if rank == 0:
            _save_state(task, run_dir / "last", counters)
            bar.write(f"{task.name}: interrupted at step {counters.step}; state saved in {run_dir / 'last'}, "
                      "run the same command again to resume")
        raise
    finally:
        bar.close()
    weights = {kind: out_dir / f"{kind}.safetensors" for kind in task.exported}
    return TrainResult(counters.step, counters.epoch, counters.best_val, counters.best_step,
                       time.monotonic() - started, weights, history, stopped_by)
