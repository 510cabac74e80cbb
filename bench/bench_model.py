"""Benchmark of a GeneCompass pre-training step against a plain BERT of the same shape.

Measures in one run, on one machine, the training step (forward + backward +
gradient clipping + AdamW step, masking and batch building excluded) of:

* A  ours, full: ``GeneCompassForPretraining`` with expression values and all
  four knowledge kinds (random knowledge matrices, ~80 % of the gene tokens
  covered, loaded with ``set_knowledge``);
* B  ours, bare: the same model with ``use_values=False, knowledge_kinds=[]``
  (separates the cost of the value and knowledge inputs from the rest);
* C  ``transformers.BertForMaskedLM`` with the same layers, heads, hidden and
  intermediate sizes, vocabulary, sequence length (genes + 1 species token),
  dropout and ``attn_implementation="sdpa"``;
* D  ours, full, decoding gene ids at the masked positions only
  (``logits_mask``), as ``genecompass.pretrain`` trains. A and C both project
  every position onto the vocabulary, so the A/C ratio compares like with like;
  D/A shows what skipping the unread 85 % of the vocabulary projection saves.

All four get the same cells (full-length, no padding), the same masked genes
(``mask_batch``: 15 % of each cell's genes; BERT's ``labels`` are the same
masked ids, -100 elsewhere, and its input carries the species token first as
ours does), the same batch size, the same AdamW settings and the same
autocast. After warm-up steps, timing rounds are interleaved (A B C A B C ...)
so that machine noise hits all four alike; each step is timed on its own (on
CUDA with a synchronisation before and after it) and the median is reported.

Target: ours (full) / BERT median step time <= 1.15 (overhead <= 15 %).

FLOPs per step (the usual estimate, stated for all four alike):

    6 x N x batch x seq  +  12 x layers x hidden x seq^2 x batch

with seq = genes + 1 and N = the non-embedding matmul parameters, i.e. the
weights and biases of every ``nn.Linear`` (lookup tables such as gene,
position and token-type embeddings are left out; BERT's decoder, tied to its
word embeddings, is a Linear and is counted). MFU = FLOPs per step / step time
/ ``--peak-tflops`` (default 989, H100/H200 dense bf16; meaningless on CPU).

    python bench/bench_model.py                          # small preset, CPU-sized defaults
    python bench/bench_model.py --preset tiny
    python bench/bench_model.py --device cuda --dtype bfloat16 --preset base
    python bench/bench_model.py --vocab 36096            # the paper's vocabulary on CPU (slower)
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genecompass.corpus import IGNORE_INDEX, mask_batch
from genecompass.devices import autocast_for, resolve_device
from genecompass.errors import InputError
from genecompass.knowledge.assemble import random_knowledge
from genecompass.model import GeneCompassConfig, GeneCompassForPretraining

TARGET_OVERHEAD = 0.15
# The paper's token dictionary: 36,092 genes, plus pad, mask and two species tokens.
PAPER_VOCAB = 36_092 + 4
# Defaults that depend on the device: (genes, batch size, timed steps per model, vocabulary). On CPU
# a smaller vocabulary keeps the run short (the demo's dictionary has ~1,200 tokens); it also makes
# the id decoder, alike in both models, a smaller share of the step, so the ratio is not flattered.
DEFAULTS = {"cpu": (256, 8, 10, 4096), "cuda": (2048, 32, 30, PAPER_VOCAB)}


# ------------------------------------------------------------------ environment


@dataclass
class Env:
    """Where and how the models run; every section gets it."""

    device: torch.device
    use_bf16: bool
    started: float = field(default_factory=time.perf_counter)

    def autocast(self):
        if self.use_bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return torch.autocast(device_type=self.device.type, enabled=False)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


def setup(args) -> Env:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    genes, batch, steps, vocab = DEFAULTS["cuda" if device.type == "cuda" else "cpu"]
    args.vocab = args.vocab or vocab
    args.genes = args.genes or genes
    args.batch_size = args.batch_size or batch
    args.steps = args.steps or steps
    _, use_bf16 = autocast_for(device, args.dtype)
    return Env(device=device, use_bf16=use_bf16)


def describe(args, env: Env) -> None:
    import transformers

    if env.cuda:
        where = f"{torch.cuda.get_device_name(env.device)} (CUDA {torch.version.cuda})"
    else:
        where = f"CPU, {torch.get_num_threads()} torch threads"
    print()
    print("GeneCompass model benchmark")
    print(f"  machine  {where}; torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"  dtype    {'bfloat16 autocast' if env.use_bf16 else 'float32'}")


def _peak_rss_mib() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


# ------------------------------------------------------------------ data and models


def make_cells(config: GeneCompassConfig, batch: int, genes: int, n_batches: int, seed: int) -> list[dict]:
    """Masked batches of full-length ranked cells (distinct gene ids, decreasing values), on the CPU."""
    generator = torch.Generator().manual_seed(seed)
    species = torch.tensor(sorted(config.species_token_ids.values()))
    first_gene = 2 + len(species)                      # pad, mask, species tokens come first
    if config.vocab_size - first_gene < genes:
        raise ValueError(f"vocabulary {config.vocab_size} is too small for cells of {genes} distinct genes")
    batches = []
    for _ in range(n_batches):
        ids = torch.stack([torch.randperm(config.vocab_size - first_gene, generator=generator)[:genes]
                           for _ in range(batch)]) + first_gene
        values = torch.sort(torch.rand(batch, genes, generator=generator) * 5, dim=1, descending=True).values
        attention_mask = torch.ones(batch, genes, dtype=torch.long)
        species_ids = species[torch.randint(len(species), (batch,), generator=generator)]
        masked_ids, masked_values, id_labels, value_labels, value_mask = mask_batch(
            ids, values, attention_mask, config.mask_probability, generator,
            mask_token_id=config.mask_token_id, pad_token_id=config.pad_token_id)
        batches.append({"input_ids": masked_ids, "values": masked_values, "species_ids": species_ids,
                        "attention_mask": attention_mask, "id_labels": id_labels, "value_labels": value_labels,
                        "value_label_mask": value_mask})
    return batches


def as_bert_batch(cells: dict) -> dict:
    """The same cells for BERT: species token first, the same masked ids as labels."""
    b = cells["input_ids"].shape[0]
    return {"input_ids": torch.cat([cells["species_ids"][:, None], cells["input_ids"]], dim=1),
            "attention_mask": torch.cat([torch.ones(b, 1, dtype=torch.long), cells["attention_mask"]], dim=1),
            "labels": torch.cat([torch.full((b, 1), IGNORE_INDEX, dtype=torch.long), cells["id_labels"]], dim=1)}


def bert_like(config: GeneCompassConfig):
    """``BertForMaskedLM`` with our config's shape, dropout, vocabulary and position table."""
    from transformers import BertConfig, BertForMaskedLM

    bert_config = BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size, hidden_act=config.hidden_act,
        hidden_dropout_prob=config.hidden_dropout_prob,
        attention_probs_dropout_prob=config.attention_probs_dropout_prob,
        max_position_embeddings=config.max_position_embeddings, initializer_range=config.initializer_range,
        layer_norm_eps=config.layer_norm_eps, pad_token_id=config.pad_token_id)
    return BertForMaskedLM._from_config(bert_config, attn_implementation="sdpa")


def matmul_parameters(model: nn.Module) -> int:
    """Weights and biases of every nn.Linear (tied ones counted where they compute)."""
    return sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
               for m in model.modules() if isinstance(m, nn.Linear))


def step_flops(n_matmul: int, layers: int, hidden: int, seq: int, batch: int) -> float:
    return 6.0 * n_matmul * batch * seq + 12.0 * layers * hidden * seq * seq * batch


@dataclass
class Contender:
    """One model with its optimizer and its (device-resident) batches; ``step()`` trains once."""

    name: str
    model: nn.Module
    batches: list[dict]
    env: Env
    optimizer: torch.optim.Optimizer = None
    times: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)         # bytes allocated at the step's peak (CUDA)
    step_extra: list[int] = field(default_factory=list)    # of which allocated during the step (CUDA)
    _i: int = 0

    def __post_init__(self):
        self.model.to(self.env.device).train()
        self.batches = [{k: v.to(self.env.device) for k, v in b.items()} for b in self.batches]
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.01)

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def step(self) -> None:
        batch = self.batches[self._i % len(self.batches)]
        self._i += 1
        with self.env.autocast():
            loss = self.model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def timed_step(self, record: bool = True) -> None:
        env = self.env
        env.sync()
        if env.cuda:
            torch.cuda.reset_peak_memory_stats(env.device)
            before = torch.cuda.memory_allocated(env.device)
        started = time.perf_counter()
        self.step()
        env.sync()
        seconds = time.perf_counter() - started
        if record:
            self.times.append(seconds)
            if env.cuda:
                peak = torch.cuda.max_memory_allocated(env.device)
                self.peaks.append(peak)
                self.step_extra.append(peak - before)

    def median(self) -> float:
        return statistics.median(self.times)

    def spread(self) -> float:
        """Interquartile range over the median: how noisy the timing was."""
        if len(self.times) < 4:
            return float("nan")
        q1, _, q3 = statistics.quantiles(self.times, n=4)
        return (q3 - q1) / self.median()


def interleaved(contenders: list[Contender], warmup: int, steps: int) -> None:
    """Warm-up rounds, then timed rounds A B C A B C ...; one step per model per round."""
    for _ in range(warmup):
        for c in contenders:
            c.timed_step(record=False)
    gc.collect()
    for _ in range(steps):
        for c in contenders:
            c.timed_step()


# ------------------------------------------------------------------ sections


def bench_training(args, env: Env) -> bool:
    """Training step of ours (full, bare) against BERT; prints its table; True when the target is met."""
    base = GeneCompassConfig.preset(args.preset, vocab_size=args.vocab, max_position_embeddings=args.genes + 1)
    bare_config = GeneCompassConfig.preset(args.preset, vocab_size=args.vocab,
                                           max_position_embeddings=args.genes + 1,
                                           use_values=False, knowledge_kinds=[])
    cells = make_cells(base, args.batch_size, args.genes, args.n_batches, args.seed)
    seq = args.genes + 1
    tokens = args.batch_size * args.genes                          # real gene tokens per step
    masked = int(cells[0]["value_label_mask"].sum())

    torch.manual_seed(args.seed)
    full = GeneCompassForPretraining(base)
    full.set_knowledge(random_knowledge(base.vocab_size, base.knowledge_dim, args.seed))
    torch.manual_seed(args.seed)
    bare = GeneCompassForPretraining(bare_config)
    torch.manual_seed(args.seed)
    bert = bert_like(base)
    torch.manual_seed(args.seed)
    masked_decoding = GeneCompassForPretraining(base)
    masked_decoding.set_knowledge(random_knowledge(base.vocab_size, base.knowledge_dim, args.seed))
    contenders = [
        Contender("ours: knowledge (4 kinds) + values", full, cells, env),
        Contender("ours: no knowledge, no values", bare, cells, env),
        Contender(f"BertForMaskedLM ({bert.config._attn_implementation})", bert,
                  [as_bert_batch(c) for c in cells], env),
        Contender("ours: knowledge + values, masked decoding", masked_decoding,
                  [{**c, "logits_mask": c["value_label_mask"]} for c in cells], env),
    ]

    print(f"  shape    preset {args.preset}: {base.num_hidden_layers} layers, {base.num_attention_heads} heads, "
          f"hidden {base.hidden_size}, intermediate {base.intermediate_size}, vocabulary {base.vocab_size:,}, "
          f"dropout {base.hidden_dropout_prob}/{base.attention_probs_dropout_prob}")
    print(f"  batch    {args.batch_size} cells x {args.genes} genes (+1 species token = seq {seq}), no padding; "
          f"{masked} of {tokens} genes masked ({masked / tokens:.1%}); {args.n_batches} batches cycled")
    print(f"  step     forward + backward + clip_grad_norm + AdamW; {args.warmup} warm-up + {args.steps} timed "
          f"steps per model, interleaved A B C D A B C D ...; median reported")
    print()

    interleaved(contenders, args.warmup, args.steps)

    peak_w = 1e12 * args.peak_tflops
    header = (f"  {'model':<40} {'params':>8} {'matmul':>8} {'ms/step':>9} {'IQR/med':>8} {'genes/s':>10} "
              f"{'TFLOP/s':>8} {'MFU':>6}" + (f" {'peak MiB':>9} {'step MiB':>9}" if env.cuda else ""))
    print(header)
    print("  " + "-" * (len(header) - 2))
    for c in contenders:
        n_matmul = matmul_parameters(c.model)
        achieved = step_flops(n_matmul, base.num_hidden_layers, base.hidden_size, seq, args.batch_size) / c.median()
        memory = (f" {max(c.peaks) / 2**20:9.0f} {max(c.step_extra) / 2**20:9.0f}" if env.cuda else "")
        print(f"  {c.name:<40} {c.parameters / 1e6:7.2f}M {n_matmul / 1e6:7.2f}M {1e3 * c.median():9.1f} "
              f"{c.spread():8.2f} {tokens / c.median():10,.0f} {achieved / 1e12:8.3f} {achieved / peak_w:6.1%}"
              + memory)
    print()
    print("  params: all trainable parameters; matmul: nn.Linear weights + biases (the N of the FLOP estimate);")
    print("  FLOPs/step = 6 x N x batch x seq + 12 x layers x hidden x seq^2 x batch; "
          f"MFU against {args.peak_tflops:g} TFLOP/s")
    if env.cuda:
        print("  peak MiB: torch.cuda.max_memory_allocated during the model's steps (all four models resident);")
        print("  step MiB: of which allocated during the step (activations, gradients, temporaries)")
    else:
        print(f"  peak RSS of this process (all four models): {_peak_rss_mib():.0f} MiB")
    print()

    a, b, c, d = (x.median() for x in contenders)
    ratio = a / c
    passed = ratio <= 1.0 + TARGET_OVERHEAD
    print(f"  ratio   ours full / BERT          = {ratio:5.3f}  (overhead {ratio - 1:+.1%}; "
          f"target overhead <= {TARGET_OVERHEAD:.0%}): {'PASS' if passed else 'FAIL'}")
    print(f"          ours bare / BERT          = {b / c:5.3f}  (architecture, value head, losses)")
    print(f"          ours full / ours bare     = {a / b:5.3f}  (knowledge + value inputs)")
    print(f"          genes/s ours full / BERT  = {c / a:5.3f}")
    print(f"          masked decoding / full    = {d / a:5.3f}  (what training runs; decoder at masked genes only)")
    return passed


def bench_extraction(args, env: Env) -> bool:
    """Cells/s of embedding extraction (``genecompass.embed.embed_dataset``) on ragged cells."""
    import datasets

    from genecompass.embed import embed_dataset
    from genecompass.model import GeneCompassModel

    config = GeneCompassConfig.preset(args.preset, vocab_size=args.vocab, max_position_embeddings=args.genes + 1)
    model = GeneCompassModel(config)
    model.set_knowledge(random_knowledge(config.vocab_size, config.knowledge_dim, args.seed))
    model.to(env.device).eval()
    rng = np.random.default_rng(args.seed)
    n_cells = args.batch_size * args.steps * 4
    lengths = rng.integers(args.genes // 4, args.genes + 1, size=n_cells)
    rows = {"input_ids": [rng.choice(np.arange(4, config.vocab_size), size=n, replace=False).tolist()
                          for n in lengths],
            "length": lengths.tolist(), "species": ["human" if i % 2 else "mouse" for i in range(n_cells)],
            "cell_id": [f"c{i}" for i in range(n_cells)]}
    rows["values"] = [np.sort(rng.uniform(0.1, 5, size=n))[::-1].tolist() for n in lengths]
    cells = datasets.Dataset.from_dict(rows)
    batch = max(args.batch_size * 4, 16)
    dtype = "bfloat16" if env.use_bf16 else "float32"
    embed_dataset(model, cells.select(range(min(n_cells, batch))), batch_size=batch, dtype=dtype, progress=False)
    env.sync()
    started = time.perf_counter()
    embed_dataset(model, cells, batch_size=batch, dtype=dtype, progress=False)
    env.sync()
    seconds = time.perf_counter() - started
    print()
    print(f"  extraction  preset {args.preset}, {n_cells} cells of {lengths.min()}-{lengths.max()} genes, "
          f"batch {batch}: {n_cells / seconds:,.0f} cells/s ({lengths.sum() / seconds:,.0f} genes/s)")
    return True


# Sections run in this order; each is ``section(args, env) -> bool`` (True: its target met) and prints
# its own table. Add another (e.g. embedding extraction) by writing it above and listing it here.
SECTIONS = (bench_training, bench_extraction)


# ------------------------------------------------------------------ driver


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("tiny", "small", "base"), default="small")
    parser.add_argument("--batch-size", type=int, default=None, help="cells per step (default 8 CPU, 32 CUDA)")
    parser.add_argument("--genes", type=int, default=None,
                        help="genes per cell = sequence length - 1 (default 256 CPU, 2048 CUDA)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default 10 CPU, 30 CUDA)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    parser.add_argument("--vocab", type=int, default=None,
                        help=f"vocabulary size (default 4,096 CPU; {PAPER_VOCAB:,} CUDA: the paper's 36,092 "
                             "genes + 4 special tokens)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="bfloat16: autocast around the forward pass")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="peak of the accelerator for MFU (default 989: H100/H200 dense bf16)")
    parser.add_argument("--n-batches", type=int, default=4, help="distinct batches cycled through")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    for name in ("batch_size", "genes", "steps", "vocab"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")

    try:
        env = setup(args)
    except InputError as error:
        parser.error(str(error))
    describe(args, env)
    ok = True
    for section in SECTIONS:
        ok &= bool(section(args, env))
        gc.collect()
        if env.cuda:
            torch.cuda.empty_cache()
    print(f"  wall time of this run {time.perf_counter() - env.started:.0f} s")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
