"""Tests of masked-gene pre-training (genecompass.pretrain)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_knowledge, torch_threads

from genecompass.corpus import length_grouped_batches, padding_fraction, random_batches
from genecompass.model import GeneCompassConfig, GeneCompassForPretraining
from genecompass.pretrain import LOG_COLUMNS, PretrainSettings, list_checkpoints, pretrain

VOCAB = 60
N_SPECIAL = 4
KDIM = 8
MAX_LEN = 24


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def synthetic_cells(n: int, seed: int) -> dict:
    """Cells of one of two gene programs; genes ranked in a fixed program order, values decreasing."""
    rng = np.random.default_rng(seed)
    genes = np.arange(N_SPECIAL, VOCAB)
    programs = [genes[: len(genes) // 2], genes[len(genes) // 2:]]
    rows = {"input_ids": [], "values": [], "length": [], "species": [], "sample": [], "cell_id": []}
    for i in range(n):
        p = int(rng.integers(2))
        program = programs[p]
        keep = program[rng.random(len(program)) < rng.uniform(0.3, 0.85)][:MAX_LEN]
        if len(keep) < 3:
            keep = program[:3]
        base = np.linspace(4.0, 0.5, len(program))[np.searchsorted(program, keep)]
        values = np.sort(base + rng.normal(0, 0.02, len(keep)))[::-1].astype(np.float32)
        rows["input_ids"].append(keep.astype(np.int32).tolist())
        rows["values"].append(values.tolist())
        rows["length"].append(len(keep))
        rows["species"].append("human" if p == 0 else "mouse")
        rows["sample"].append(f"s{p}")
        rows["cell_id"].append(f"cell{seed}_{i}")
    return rows


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    import datasets

    features = datasets.Features({
        "input_ids": datasets.Sequence(datasets.Value("int32")),
        "values": datasets.Sequence(datasets.Value("float32")),
        "length": datasets.Value("int32"), "species": datasets.Value("string"),
        "sample": datasets.Value("string"), "cell_id": datasets.Value("string")})
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict(synthetic_cells(200, 1), features=features),
        "validation": datasets.Dataset.from_dict(synthetic_cells(40, 2), features=features)})
    path = tmp_path_factory.mktemp("corpus") / "dataset"
    dd.save_to_disk(str(path))
    return path



def config(**overrides) -> GeneCompassConfig:
    kwargs = {"vocab_size": VOCAB, "max_position_embeddings": MAX_LEN + 1, "knowledge_dim": KDIM,
              "knowledge_kinds": ["grn", "family"], "hidden_dropout_prob": 0.02,
              "attention_probs_dropout_prob": 0.02}
    kwargs.update(overrides)
    return GeneCompassConfig.preset("tiny", **kwargs)


def short_settings(**overrides) -> PretrainSettings:
    kwargs = {"lr": 2e-3, "warmup_steps": 3, "batch_size": 16, "max_steps": 12, "checkpoint_every": 4,
              "eval_every": 6, "log_every": 2, "seed": 3, "device": "cpu"}
    kwargs.update(overrides)
    return PretrainSettings(**kwargs)


def final_state(out_dir: Path) -> dict:
    return GeneCompassForPretraining.from_pretrained(out_dir / "model").state_dict()


def read_log(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def learned(corpus, tmp_path_factory):
    """A longer run that should learn the planted programs."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("learned")
    settings = PretrainSettings(lr=3e-3, warmup_steps=10, batch_size=16, epochs=30, checkpoint_every=100,
                                eval_every=65, log_every=5, seed=0, device="cpu", mask_probability=0.15)
    summary = pretrain(corpus, out, config(), random_knowledge(VOCAB, KDIM), settings)
    return out, summary


def test_training_learns_planted_structure(learned):
    out, summary = learned
    rows = read_log(out / "training_log.csv")
    assert list(rows[0]) == list(LOG_COLUMNS)
    losses = [float(r["id_loss"]) for r in rows]
    assert np.mean(losses[-3:]) < np.mean(losses[:2]) - 0.5
    chance = 1.0 / (VOCAB - N_SPECIAL)
    accuracy = summary["final_metrics"]["val_id_accuracy"]
    assert accuracy > 5 * chance, accuracy
    assert summary["steps"] == summary["total_steps"] == 30 * summary["batches_per_epoch"]
    assert summary["tokens_seen"] > 0 and summary["tokens_per_second"] > 0
    assert [r for r in rows if r["val_id_accuracy"]], "validation metrics logged"


def test_outputs_and_reload(learned, corpus):
    out, summary = learned
    assert (out / "loss.png").stat().st_size > 0
    written = json.loads((out / "summary.json").read_text())
    assert written["steps"] == summary["steps"]
    assert set(written["final_metrics"]) >= {"val_id_accuracy", "val_value_mse", "loss"}
    model = GeneCompassForPretraining.from_pretrained(out / "model")
    knowledge = random_knowledge(VOCAB, KDIM)
    grn = model.genecompass.embeddings.knowledge_grn
    expected = torch.as_tensor(knowledge.matrices["grn"]) * torch.as_tensor(knowledge.masks["grn"])[:, None]
    assert torch.equal(grn, expected)
    # keeps only the last two checkpoints
    assert len(list_checkpoints(out)) <= 2


def test_resume_matches_uninterrupted_and_is_deterministic(corpus, tmp_path):
    settings = short_settings()
    full = tmp_path / "full"
    pretrain(corpus, full, config(), random_knowledge(VOCAB, KDIM), settings)
    again = tmp_path / "again"
    pretrain(corpus, again, config(), random_knowledge(VOCAB, KDIM), settings)

    interrupted = tmp_path / "interrupted"
    partial = pretrain(corpus, interrupted, config(), random_knowledge(VOCAB, KDIM), settings, stop_after_steps=8)
    assert partial["stopped"] and partial["steps"] == 8
    assert [s for s, _ in list_checkpoints(interrupted)] == [4, 8]
    assert not (interrupted / "model").exists()
    resumed = pretrain(corpus, interrupted, config(), random_knowledge(VOCAB, KDIM), settings)
    assert resumed["resumed"] and resumed["steps"] == 12

    a, b, c = final_state(full), final_state(again), final_state(interrupted)
    for name in a:
        assert torch.equal(a[name], b[name]), f"non-deterministic {name}"
        assert torch.allclose(a[name].float(), c[name].float(), atol=1e-6), f"resume differs in {name}"
    log_full = read_log(full / "training_log.csv")
    log_resumed = read_log(interrupted / "training_log.csv")
    assert [r["step"] for r in log_full] == [r["step"] for r in log_resumed]
    assert np.allclose([float(r["loss"]) for r in log_full], [float(r["loss"]) for r in log_resumed])


def test_checkpoints_of_other_settings_are_not_resumed(corpus, tmp_path):
    out = tmp_path / "run"
    pretrain(corpus, out, config(), random_knowledge(VOCAB, KDIM), short_settings(), stop_after_steps=8)
    assert [s for s, _ in list_checkpoints(out)] == [4, 8]
    # Bookkeeping settings may change between an interruption and the resumption ...
    resumed = pretrain(corpus, out, config(), random_knowledge(VOCAB, KDIM),
                       short_settings(log_every=3, eval_every=5), stop_after_steps=9)
    assert resumed["steps"] == 9
    assert [s for s, _ in list_checkpoints(out)] == [4, 8]
    # ... a different learning rate makes the old checkpoints foreign: the run starts afresh.
    fresh = pretrain(corpus, out, config(), random_knowledge(VOCAB, KDIM), short_settings(lr=1e-3))
    assert not fresh["resumed"] and fresh["steps"] == 12
    assert [s for s, _ in list_checkpoints(out)] == [4, 8]
    log_steps = [int(r["step"]) for r in read_log(out / "training_log.csv")]
    assert log_steps == sorted(set(log_steps)) and log_steps[0] == 2


def test_no_knowledge_and_bf16(corpus, tmp_path):
    settings = short_settings(max_steps=3, checkpoint_every=100, eval_every=100, dtype="bfloat16")
    summary = pretrain(corpus, tmp_path / "plain", config(knowledge_kinds=[]), None, settings)
    assert summary["steps"] == 3 and np.isfinite(summary["final_metrics"]["val_value_mse"])
    with pytest.raises(ValueError, match="knowledge"):
        pretrain(corpus, tmp_path / "bad", config(), None, settings)


def test_length_grouping_cuts_padding(corpus):
    import datasets

    lengths = np.asarray(datasets.load_from_disk(str(corpus))["train"]["length"])
    grouped = length_grouped_batches(lengths, 16, seed=0, epoch=0, mega_batch_factor=50)
    plain = random_batches(len(lengths), 16, seed=0)
    assert sorted(np.concatenate(grouped).tolist()) == list(range(len(lengths)))
    assert padding_fraction(lengths, grouped) < 0.5 * padding_fraction(lengths, plain)
    # seeded: same seed and epoch give the same batches, another epoch another order
    again = length_grouped_batches(lengths, 16, seed=0, epoch=0)
    assert all(np.array_equal(x, y) for x, y in zip(grouped, again))
    other = length_grouped_batches(lengths, 16, seed=0, epoch=1)
    assert not all(np.array_equal(x, y) for x, y in zip(grouped, other))


def test_rank_shards_are_disjoint():
    from genecompass.corpus import rank_batches

    batches = [np.array([i]) for i in range(11)]
    shards = [rank_batches(batches, r, 2) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5
    seen = [int(b[0]) for shard in shards for b in shard]
    assert len(seen) == len(set(seen))


def _ddp_worker(rank: int, world_size: int, port: int, corpus: str, out: str) -> None:
    import os

    import torch.distributed as dist

    import genecompass.pretrain as module
    from genecompass.pretrain import init_distributed

    torch.set_num_threads(1)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank)})
    assert init_distributed("gloo")[:2] == (rank, world_size)
    # Record what this rank trains on and what it saves (spawned processes: patch here, report in a file).
    seen, saved = [], []
    original_getitem, original_save = module.BatchReader.__getitem__, module.save_checkpoint

    def getitem(self, i):
        if len(self.split) == 200:  # the training split (validation has 40 cells)
            seen.append([int(x) for x in self.batches[i]])  # row numbers of the shared training split
        return original_getitem(self, i)

    def save(out_dir, step, *args, **kwargs):
        saved.append(int(step))
        return original_save(out_dir, step, *args, **kwargs)

    module.BatchReader.__getitem__, module.save_checkpoint = getitem, save
    try:
        pretrain(corpus, out, config(), random_knowledge(VOCAB, KDIM),
                 short_settings(max_steps=6, checkpoint_every=3, eval_every=3, num_workers=0))
    finally:
        dist.destroy_process_group()
    Path(f"{out}.rank{rank}.json").write_text(json.dumps({"seen": seen, "saved": saved}))


def test_distributed_two_gloo_processes(corpus, tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, port, str(corpus), str(out)), nprocs=2, join=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 6
    ranks = [json.loads(Path(f"{out}.rank{r}.json").read_text()) for r in range(2)]
    # Each rank trained 6 batches, and no cell went to both ranks.
    assert [len(r["seen"]) for r in ranks] == [6, 6]
    cells = [{row for batch in r["seen"] for row in batch} for r in ranks]
    assert all(len(c) >= 5 * 16 for c in cells) and not cells[0] & cells[1]
    # Rank 0 alone wrote the checkpoint (step 3; step 6 is the final model).
    assert ranks[0]["saved"] == [3] and ranks[1]["saved"] == []
    assert summary["batches_per_epoch"] == 200 // 16 // 2
    assert [s for s, _ in list_checkpoints(out)] == [3]
    GeneCompassForPretraining.from_pretrained(out / "model")


def test_worker_processes_give_same_result(corpus, tmp_path):
    settings = short_settings(max_steps=4, checkpoint_every=100, eval_every=100)
    pretrain(corpus, tmp_path / "w0", config(), random_knowledge(VOCAB, KDIM), settings)
    settings.num_workers = 2
    pretrain(corpus, tmp_path / "w2", config(), random_knowledge(VOCAB, KDIM), settings)
    a, b = final_state(tmp_path / "w0"), final_state(tmp_path / "w2")
    assert all(torch.equal(a[k], b[k]) for k in a)
