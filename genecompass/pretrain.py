"""Masked-gene pre-training of GeneCompass (paper, "GeneCompass architecture and pre-training").

``pretrain(corpus_dir, out_dir, model_config, knowledge, settings)`` trains a
:class:`~genecompass.model.GeneCompassForPretraining` on the joined corpus
(``docs/formats.md``, "Corpus"): 15 % of the genes of each cell are masked and
the loss is ``(1 - beta) * L_ID + beta * L_exp``.

- The corpus is read memory-mapped (``datasets.load_from_disk``); only the rows
  of the current batch are read. Batches are length-grouped: the cells of an
  epoch are shuffled (seeded), cut into mega-batches of
  ``mega_batch_factor × batch_size`` cells, each sorted by length and cut into
  batches, and the batch order is shuffled again; this cuts padding.
- AdamW, linear warm-up then linear decay, gradient clipping, bf16 autocast
  when asked and supported.
- Checkpoints every ``checkpoint_every`` steps under
  ``out_dir/checkpoints/step-N/`` (written to a temporary folder, then renamed;
  the last ``keep_checkpoints`` are kept). A run finding a checkpoint resumes
  from the latest one: model, optimizer, scheduler, step (which fixes the data
  position, since the batch order of an epoch and the masking of a step are
  functions of the seed) and RNG states. On CPU a resumed run ends with the
  same weights as an uninterrupted one.
- Validation (masked-ID accuracy, value MSE, fixed seeded masking) every
  ``eval_every`` steps and at the end; ``training_log.csv``, ``loss.png``,
  ``model/`` (``save_pretrained``, knowledge buffers included) and
  ``summary.json`` in ``out_dir``.
- Distributed data parallel when ``torch.distributed`` is initialised
  (:func:`init_distributed` under ``torchrun``): each rank takes a disjoint
  share of every epoch's batches; only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import random
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from genecompass.corpus import (
    CORPUS_COLUMNS,
    IGNORE_INDEX,
    BatchReader,
    batch_loader,
    cell_lengths,
    length_grouped_batches,
    mask_batch,
    rank_batches,
)
from genecompass.devices import autocast_for, resolve_device
from genecompass.model import GeneCompassConfig, GeneCompassForPretraining
from genecompass.utils import atomic_output, write_json

log = logging.getLogger(__name__)

LOG_COLUMNS = ("step", "epoch", "lr", "loss", "id_loss", "value_loss", "val_id_accuracy", "val_value_mse")
_CHECKPOINT_RE = re.compile(r"^step-(\d+)$")


@dataclass
class PretrainSettings:
    """Optimisation and bookkeeping settings of :func:`pretrain`.

    ``beta`` and ``mask_probability`` default to the model config's values
    (``None``). ``epochs`` bounds the run unless ``max_steps`` is given.
    ``max_length`` (genes per cell) defaults to ``model_config.max_genes``.
    ``eval_max_cells`` limits the validation cells used (``None``: all).
    """

    lr: float = 5e-5
    warmup_steps: int = 0
    batch_size: int = 32
    epochs: int = 1
    max_steps: int | None = None
    weight_decay: float = 0.01
    beta: float | None = None
    mask_probability: float | None = None
    max_grad_norm: float = 1.0
    adam_betas: tuple = (0.9, 0.999)
    adam_epsilon: float = 1e-8
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    eval_every: int = 1000
    eval_max_cells: int | None = None
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    num_workers: int = 0
    max_length: int | None = None
    mega_batch_factor: int = 50

    def __post_init__(self):
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu or cuda, got '{self.device}'")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be float32 or bfloat16, got '{self.dtype}'")
        for name in ("batch_size", "checkpoint_every", "eval_every", "log_every", "keep_checkpoints",
                     "mega_batch_factor"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_steps is None and int(self.epochs) < 1:
            raise ValueError("epochs must be at least 1 when max_steps is not given")
        if self.max_steps is not None and int(self.max_steps) < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.warmup_steps < 0 or self.lr <= 0:
            raise ValueError("warmup_steps must be >= 0 and lr > 0")

    # Keys of the workflow's pretrain section that size the job, not the run.
    RESOURCE_KEYS = ("gpus", "nodes", "rendezvous_port", "threads")

    @classmethod
    def from_config(cls, section: dict, seed: int, max_length: int | None = None) -> PretrainSettings:
        """Settings from the workflow's ``pretrain:`` section (resource keys ignored)."""
        known = {f for f in cls.__dataclass_fields__}
        fields = {k: v for k, v in section.items() if k not in cls.RESOURCE_KEYS}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"pretrain section: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**fields, seed=int(seed), max_length=max_length)


# --------------------------------------------------------------------------- distributed


def init_distributed(backend: str | None = None) -> tuple[int, int, int]:
    """Initialise ``torch.distributed`` from the torchrun environment when WORLD_SIZE > 1.

    Returns ``(rank, world_size, local_rank)``; ``(0, 1, 0)`` for a single
    process. The backend defaults to NCCL when CUDA is available, gloo
    otherwise.
    """
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), local_rank
    if world_size <= 1:
        return 0, 1, 0
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), local_rank


def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier(world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def _all_reduce_sum(values: list[float], device, world_size: int) -> list[float]:
    if world_size <= 1:
        return [float(v) for v in values]
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _step_generator(seed: int, step: int, rank: int = 0, world_size: int = 1) -> torch.Generator:
    """The masking generator of one step (a function of seed and step: resumable)."""
    value = (int(seed) * 1_000_003 + int(step) * max(1, world_size) + rank) % (2 ** 63 - 1)
    return torch.Generator().manual_seed(value)


# --------------------------------------------------------------------------- checkpoints


def list_checkpoints(out_dir) -> list[tuple[int, Path]]:
    """Complete checkpoints (those with ``state.pt``) as ``(step, path)``, oldest first."""
    root = Path(out_dir) / "checkpoints"
    found = []
    if root.is_dir():
        for path in root.iterdir():
            match = _CHECKPOINT_RE.match(path.name)
            if match and path.is_dir() and (path / "state.pt").is_file():
                found.append((int(match.group(1)), path))
    return sorted(found)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state["numpy"] = {"kind": str(kind), "keys": [int(k) for k in keys], "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    version, internal, gauss = random.getstate()
    state["python"] = {"version": int(version), "internal": [int(x) for x in internal],
                       "gauss": None if gauss is None else float(gauss)}
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


def save_checkpoint(out_dir, step: int, model, optimizer, scheduler, extra: dict | None = None,
                    keep: int = 2) -> Path:
    """Write ``out_dir/checkpoints/step-N/`` atomically and keep the last ``keep``."""
    root = Path(out_dir) / "checkpoints"
    path = root / f"step-{step}"
    with atomic_output(path) as tmp:
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp / "model")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save({"step": int(step), "rng": _rng_state(), **(extra or {})}, tmp / "state.pt")
    for _, old in list_checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def load_checkpoint(path, model, optimizer, scheduler) -> dict:
    """Restore model, optimizer and scheduler from a checkpoint folder; returns its state dict."""
    path = Path(path)
    loaded = type(model).from_pretrained(path / "model")
    model.load_state_dict(loaded.state_dict(), strict=True)
    del loaded
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu"))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True, map_location="cpu"))
    return torch.load(path / "state.pt", weights_only=True, map_location="cpu")


# Settings that change the trajectory of a run; the others (device, logging,
# checkpoint cadence, loader workers) may differ between an interrupted run and its resumption.
_TRAJECTORY_SETTINGS = ("lr", "warmup_steps", "batch_size", "epochs", "max_steps", "weight_decay", "beta",
                        "mask_probability", "max_grad_norm", "adam_betas", "adam_epsilon", "seed", "dtype",
                        "mega_batch_factor")


def run_fingerprint(config: GeneCompassConfig, settings: PretrainSettings, n_train: int, max_length: int,
                    world_size: int) -> str:
    """SHA-256 of what fixes a run's trajectory: model config, optimisation settings, data size, ranks."""
    import hashlib
    import json

    model = {k: v for k, v in config.to_dict().items() if k not in ("transformers_version", "architectures")}
    trajectory = {k: _jsonable(getattr(settings, k)) for k in _TRAJECTORY_SETTINGS}
    payload = {"model": model, "settings": trajectory, "n_train": int(n_train), "max_length": int(max_length),
               "world_size": int(world_size)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _discard_foreign_checkpoints(out_dir, fingerprint: str) -> None:
    """Remove checkpoints written by a run with other settings (they must not be resumed)."""
    for _, path in list_checkpoints(out_dir):
        state = torch.load(path / "state.pt", weights_only=True, map_location="cpu")
        if state.get("fingerprint") != fingerprint:
            log.warning("checkpoint %s belongs to a run with other settings (model, optimisation or data); "
                        "removing it and starting afresh", path)
            shutil.rmtree(path)


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model, split, settings: PretrainSettings, max_length: int, device, rank: int = 0,
             world_size: int = 1, autocast=None) -> dict:
    """Masked-ID accuracy and value MSE over (part of) a split, with fixed seeded masking."""
    cfg = model.config
    mask_probability = settings.mask_probability or cfg.mask_probability
    n = len(split) if settings.eval_max_cells is None else min(len(split), int(settings.eval_max_cells))
    lengths = cell_lengths(split, max_length)[:n]
    order = np.argsort(-lengths, kind="stable")
    batches = [order[i:i + settings.batch_size] for i in range(0, n, settings.batch_size)]
    batches = batches[rank::world_size] if world_size > 1 else batches
    reader = BatchReader(split, batches, max_length, cfg.species_token_ids, cfg.pad_token_id)
    generator = torch.Generator().manual_seed(int(settings.seed) + 7_777_777)
    was_training = model.training
    model.eval()
    correct = total = sq_error = id_loss_sum = 0.0
    for i in range(len(reader)):
        batch = reader[i]
        # Fixed masking: batch i of the sorted split always gets the same mask.
        generator.manual_seed(int(settings.seed) + 7_777_777 + i * max(1, world_size) + rank)
        ids, vals, id_labels, value_labels, value_mask = mask_batch(
            batch["input_ids"], batch["values"], batch["attention_mask"], mask_probability, generator,
            cfg.mask_token_id, cfg.pad_token_id)
        with autocast() if autocast else contextlib.nullcontext():
            out = model(input_ids=ids.to(device), values=vals.to(device),
                        species_ids=batch["species_ids"].to(device),
                        attention_mask=batch["attention_mask"].to(device),
                        logits_mask=(id_labels != IGNORE_INDEX).to(device))
        logits = out.logits.float().cpu()  # (n masked, vocab)
        preds = out.value_predictions.float().cpu()
        selected = id_labels != IGNORE_INDEX
        correct += float((logits.argmax(-1) == id_labels[selected]).sum())
        total += float(selected.sum())
        id_loss_sum += float(torch.nn.functional.cross_entropy(logits, id_labels[selected], reduction="sum"))
        sq_error += float(((preds - value_labels)[value_mask] ** 2).sum())
    model.train(was_training)
    correct, total, sq_error, id_loss_sum = _all_reduce_sum([correct, total, sq_error, id_loss_sum], device,
                                                           world_size)
    if total == 0:
        return {"val_id_accuracy": float("nan"), "val_value_mse": float("nan"), "val_id_loss": float("nan"),
                "val_masked_genes": 0}
    return {"val_id_accuracy": correct / total, "val_value_mse": sq_error / total,
            "val_id_loss": id_loss_sum / total, "val_masked_genes": int(total)}


# --------------------------------------------------------------------------- logs


def _read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _truncate_log(path: Path, step: int) -> None:
    """Drop rows past ``step`` (written after the checkpoint a run resumes from)."""
    rows = [r for r in _read_log(path) if int(r["step"]) <= step]
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _append_log(path: Path, row: dict) -> None:
    new = not path.is_file()
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in LOG_COLUMNS})


def plot_log(log_path, path) -> None:
    """Training loss (and its parts) and validation metrics against step."""
    from genecompass.plotting import plt, save_figure

    rows = _read_log(Path(log_path))

    def series(key):
        pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("loss", "id_loss", "value_loss"):
        x, y = series(key)
        if x:
            axes[0].plot(x, y, label=key)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("training loss")
    axes[0].legend()
    for key in ("val_id_accuracy", "val_value_mse"):
        x, y = series(key)
        if x:
            axes[1].plot(x, y, marker="o", label=key)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("validation")
    axes[1].legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


# --------------------------------------------------------------------------- training


def pretrain(corpus_dir, out_dir, model_config: GeneCompassConfig, knowledge=None,
             settings: PretrainSettings | None = None, stop_after_steps: int | None = None) -> dict:
    """Pre-train GeneCompass on a corpus; returns the summary (also ``out_dir/summary.json``).

    ``knowledge`` is a :class:`~genecompass.knowledge.assemble.KnowledgeMatrices`
    (required when ``model_config.knowledge_kinds`` is not empty) or ``None``.
    ``stop_after_steps`` ends the process-local run after that global step
    (after its checkpoint, if one is due) without final outputs, as an
    interruption would; a later call resumes.
    """
    import datasets
    from transformers import get_linear_schedule_with_warmup

    settings = settings or PretrainSettings()
    out_dir = Path(out_dir)
    rank, world_size = _dist_info()
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if world_size > 1 else 0
    device = resolve_device(settings.device, local_rank)
    is_main = rank == 0
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)

    config = GeneCompassConfig.from_dict(model_config.to_dict())
    if settings.beta is not None:
        config.beta = float(settings.beta)
    if settings.mask_probability is not None:
        config.mask_probability = float(settings.mask_probability)
    max_length = int(settings.max_length or config.max_genes)
    if max_length > config.max_genes:
        raise ValueError(f"max_length {max_length} exceeds the model's position table ({config.max_genes} genes; "
                         f"raise max_position_embeddings)")
    if config.knowledge_kinds and knowledge is None:
        raise ValueError(f"the model uses knowledge {config.knowledge_kinds} but no knowledge was given")

    corpus = datasets.load_from_disk(str(corpus_dir))
    if "train" not in corpus:
        raise ValueError(f"corpus {corpus_dir} has no 'train' split (splits: {list(corpus)})")
    train = corpus["train"].select_columns(list(CORPUS_COLUMNS))
    validation = corpus["validation"].select_columns(list(CORPUS_COLUMNS)) if "validation" in corpus else None
    if len(train) == 0:
        raise ValueError(f"corpus {corpus_dir} has an empty train split")
    train_lengths = cell_lengths(train, max_length)
    n_epoch_batches = len(length_grouped_batches(train_lengths, settings.batch_size, settings.seed, 0,
                                                 settings.mega_batch_factor))
    batches_per_epoch = n_epoch_batches // world_size if world_size > 1 else n_epoch_batches
    if batches_per_epoch < 1:
        raise ValueError(f"{len(train)} training cells give no batch per rank ({world_size} ranks)")
    if settings.max_steps is not None:
        total_steps = int(settings.max_steps)
    else:
        total_steps = int(settings.epochs) * batches_per_epoch

    # Model and optimisation (seeded; weights replaced when resuming).
    torch.manual_seed(int(settings.seed))
    np.random.seed(int(settings.seed) % (2 ** 32))
    random.seed(int(settings.seed))
    model = GeneCompassForPretraining(config)
    if knowledge is not None and config.knowledge_kinds:
        model.set_knowledge(knowledge)
    model.to(device)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=settings.lr, betas=tuple(settings.adam_betas), eps=settings.adam_epsilon)
    scheduler = get_linear_schedule_with_warmup(optimizer, settings.warmup_steps, total_steps)

    step = 0
    tokens_seen_before = 0
    seconds_before = 0.0
    fingerprint = run_fingerprint(config, settings, len(train), max_length, world_size)
    if is_main:
        _discard_foreign_checkpoints(out_dir, fingerprint)
    _barrier(world_size)
    checkpoints = list_checkpoints(out_dir)
    if checkpoints:
        _, ckpt_path = checkpoints[-1]
        state = load_checkpoint(ckpt_path, model, optimizer, scheduler)
        step = int(state["step"])
        tokens_seen_before = int(state.get("tokens_seen", 0))
        seconds_before = float(state.get("seconds", 0.0))
        if rank == 0:
            _set_rng_state(state["rng"])
        else:  # other ranks: a seeded, rank-specific dropout stream
            torch.manual_seed(int(settings.seed) * 7919 + rank * 104729 + step)
        log.info("resumed from %s (step %d of %d)", ckpt_path, step, total_steps)
        if is_main:
            _truncate_log(out_dir / "training_log.csv", step)
    elif is_main and (out_dir / "training_log.csv").exists():
        (out_dir / "training_log.csv").unlink()
    if world_size > 1 and not checkpoints and rank > 0:
        torch.manual_seed(int(settings.seed) * 7919 + rank * 104729)

    autocast, use_bf16 = autocast_for(device, settings.dtype)

    train_model = model
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)

    mask_probability = config.mask_probability
    last_metrics: dict = {}
    window = [0.0, 0.0, 0.0, 0]
    tokens_seen = 0
    started = time.time()
    stopped = False
    model.train()

    def run_eval() -> dict:
        if validation is None or len(validation) == 0:
            return {}
        return evaluate(model, validation, settings, max_length, device, rank, world_size, autocast)

    while step < total_steps and not stopped:
        epoch = step // batches_per_epoch
        position = step % batches_per_epoch
        batches = rank_batches(length_grouped_batches(train_lengths, settings.batch_size, settings.seed, epoch,
                                                       settings.mega_batch_factor), rank, world_size)
        batches = batches[position:batches_per_epoch]
        reader = BatchReader(train, batches, max_length, config.species_token_ids, config.pad_token_id)
        for batch in batch_loader(reader, settings.num_workers, int(settings.seed) + epoch):
            generator = _step_generator(settings.seed, step, rank, world_size)
            ids, vals, id_labels, value_labels, value_mask = mask_batch(
                batch["input_ids"], batch["values"], batch["attention_mask"], mask_probability, generator,
                config.mask_token_id, config.pad_token_id)
            with autocast():
                out = train_model(input_ids=ids.to(device), values=vals.to(device),
                                  species_ids=batch["species_ids"].to(device),
                                  attention_mask=batch["attention_mask"].to(device),
                                  id_labels=id_labels.to(device), value_labels=value_labels.to(device),
                                  value_label_mask=value_mask.to(device),
                                  logits_mask=(id_labels != IGNORE_INDEX).to(device))
            loss = out.loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.max_grad_norm and settings.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            tokens_seen += int(batch["attention_mask"].sum())
            window[0] += float(loss.detach())
            window[1] += float(out.id_loss.detach())
            window[2] += float(out.value_loss.detach())
            window[3] += 1

            metrics = run_eval() if (step % settings.eval_every == 0 or step == total_steps) else {}
            if metrics:
                last_metrics = metrics
            if step % settings.log_every == 0 or metrics or step == total_steps:
                sums = _all_reduce_sum(window, device, world_size)
                count = max(1.0, sums[3])
                row = {"step": step, "epoch": round(step / batches_per_epoch, 6),
                       "lr": scheduler.get_last_lr()[0], "loss": sums[0] / count, "id_loss": sums[1] / count,
                       "value_loss": sums[2] / count, "val_id_accuracy": metrics.get("val_id_accuracy"),
                       "val_value_mse": metrics.get("val_value_mse")}
                if is_main:
                    _append_log(out_dir / "training_log.csv", row)
                window = [0.0, 0.0, 0.0, 0]
            if step % settings.checkpoint_every == 0 and step < total_steps:
                seen = tokens_seen_before + int(_all_reduce_sum([tokens_seen], device, world_size)[0])
                if is_main:
                    elapsed = seconds_before + time.time() - started
                    save_checkpoint(out_dir, step, model, optimizer, scheduler,
                                    {"tokens_seen": seen, "seconds": elapsed, "epoch": epoch,
                                     "fingerprint": fingerprint},
                                    keep=settings.keep_checkpoints)
                _barrier(world_size)
            if stop_after_steps is not None and step >= stop_after_steps:
                stopped = True
                break
            if step >= total_steps:
                break

    seconds = seconds_before + time.time() - started
    tokens_total = tokens_seen_before + int(_all_reduce_sum([tokens_seen], device, world_size)[0])
    if stopped and step < total_steps:
        return {"stopped": True, "steps": step, "total_steps": total_steps}

    if not last_metrics:  # already finished before (resumed at the end) or no evaluation ran
        last_metrics = run_eval()
    summary = {
        "steps": step, "total_steps": total_steps, "epochs": round(step / batches_per_epoch, 6),
        "batches_per_epoch": batches_per_epoch, "world_size": world_size, "device": str(device),
        "dtype": "bfloat16" if use_bf16 else "float32", "tokens_seen": tokens_total,
        "seconds": round(seconds, 3), "tokens_per_second": tokens_total / seconds if seconds > 0 else None,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "final_metrics": last_metrics, "settings": _jsonable(asdict(settings)),
        "resumed": bool(checkpoints),
    }
    if is_main:
        rows = _read_log(out_dir / "training_log.csv")
        if rows:
            summary["final_metrics"] = {**last_metrics, "loss": float(rows[-1]["loss"]),
                                        "id_loss": float(rows[-1]["id_loss"]),
                                        "value_loss": float(rows[-1]["value_loss"])}
        with atomic_output(out_dir / "model") as tmp:
            model.save_pretrained(tmp)
        plot_log(out_dir / "training_log.csv", out_dir / "loss.png")
        write_json(summary, out_dir / "summary.json")
    _barrier(world_size)
    return summary


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value




def save_untrained_model(model_section: dict, variant: str, dictionary_path, knowledge_path, seed: int,
                         out_model) -> GeneCompassForPretraining:
    """Rule ``untrained_model``: the ``variant``'s architecture and knowledge with seeded initial weights, the
    control every task compares the pretrained model with."""
    from genecompass.dictionary import read_dictionary
    from genecompass.knowledge.assemble import load_knowledge

    dictionary = read_dictionary(dictionary_path)
    knowledge = load_knowledge(knowledge_path, dictionary)
    config = GeneCompassConfig.for_variant(model_section, variant, len(dictionary), knowledge.dim)
    torch.manual_seed(seed)
    model = GeneCompassForPretraining(config)
    if config.knowledge_kinds:
        model.set_knowledge(knowledge)
    with atomic_output(out_model) as tmp:
        model.save_pretrained(tmp)
    return model


__all__ = [
    "LOG_COLUMNS", "PretrainSettings", "evaluate", "init_distributed", "list_checkpoints", "load_checkpoint",
    "plot_log", "pretrain", "run_fingerprint", "save_checkpoint", "save_untrained_model",
]
