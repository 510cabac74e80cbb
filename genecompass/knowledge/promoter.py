"""Promoter embeddings: a DNABERT-style k-mer BERT over promoter sequences.

Paper, "Promoter embeddings": each gene's promoter (500 bases upstream and
2,000 downstream of the TSS) is fine-tuned on the pre-trained DNABERT for 40
epochs, and the model's hidden states give a 768-d vector per gene.

This module reproduces that recipe without needing anything the authors had:

- a k-mer tokenizer identical in layout to DNABERT's (overlapping k-mers, stride
  1; ``[PAD] [UNK] [CLS] [SEP] [MASK]`` then the 4^k k-mers; a ``vocab.txt``
  that ``transformers.BertTokenizer`` loads), with vectorised numpy encoding;
- a ``BertForMaskedLM`` either loaded from a local DNABERT checkpoint
  directory and fine-tuned, or trained from scratch, in both cases by masked
  k-mer modelling with DNABERT's contiguous-span masking;
- embeddings: sequences longer than the model's window are cut into
  non-overlapping windows, each window is mean-pooled over its k-mer tokens
  (padding and ``[CLS]``/``[SEP]`` excluded), windows are averaged per
  promoter, and a gene's promoters are averaged into one vector.

Nothing is downloaded: a pre-trained model is used only from a local folder.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from genecompass.devices import resolve_device, resolve_dtype
from genecompass.errors import InputError
from genecompass.knowledge.evaluate import pair_auc
from genecompass.knowledge.gene2vec import GeneVectors, family_pairs
from genecompass.utils import atomic_output

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
BASES = "ACGT"
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
STATS_FILE = "training_stats.json"
# ignore_index of torch's cross-entropy, as in Hugging Face MLM labels
IGNORE_LABEL = -100

# byte -> 2-bit base code; 4 marks anything that is not A/C/G/T (N, IUPAC codes, ...)
_BASE_CODE = np.full(256, 4, dtype=np.uint8)
for _code, _base in enumerate(BASES):
    _BASE_CODE[ord(_base)] = _code
    _BASE_CODE[ord(_base.lower())] = _code


# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------


def all_kmers(k: int) -> list[str]:
    """The 4^k k-mers in lexicographic A<C<G<T order (the k-mer part of our vocab)."""
    return ["".join(chars) for chars in itertools.product(BASES, repeat=k)]


def kmer_tokenize(sequence: str, k: int = 6) -> list[str]:
    """Overlapping k-mers of ``sequence`` (stride 1), as DNABERT writes its input.

    Case is ignored; a k-mer holding any base other than A/C/G/T becomes
    ``[UNK]``. A sequence shorter than ``k`` has no k-mers. This is the readable
    reference; :meth:`KmerTokenizer.encode` is the fast path.
    """
    sequence = sequence.upper()
    tokens = []
    for start in range(len(sequence) - k + 1):
        kmer = sequence[start:start + k]
        tokens.append(kmer if all(base in BASES for base in kmer) else "[UNK]")
    return tokens


class KmerTokenizer:
    """DNABERT-layout k-mer tokenizer backed by a vocabulary list.

    The vocabulary may come from a DNABERT checkpoint (whose k-mer order need
    not be ours): encoding goes through a lookup table from the k-mer's 2-bit
    index to its token id, so any order works.
    """

    def __init__(self, vocab: list[str], source: str | os.PathLike | None = None):
        self.vocab = list(vocab)
        self.source = str(source) if source is not None else None
        index = {token: i for i, token in enumerate(self.vocab)}
        missing = [token for token in SPECIAL_TOKENS if token not in index]
        if missing:
            raise InputError(source, VOCAB_FILE, f"special tokens {missing} are missing",
                             "use a DNABERT vocab.txt (it starts with [PAD] [UNK] [CLS] [SEP] [MASK])")
        kmer_lengths = {len(token) for token in self.vocab if token not in SPECIAL_TOKENS}
        if len(kmer_lengths) != 1:
            raise InputError(source, VOCAB_FILE,
                             f"k-mer tokens have lengths {sorted(kmer_lengths)}, expected one k",
                             "use the vocab.txt of a single DNABERT k-mer model")
        self.k = kmer_lengths.pop()
        lookup = np.full(4 ** self.k, -1, dtype=np.int64)
        for code, kmer in enumerate(all_kmers(self.k)):
            lookup[code] = index.get(kmer, -1)
        if (lookup < 0).any():
            absent = [kmer for code, kmer in enumerate(all_kmers(self.k)) if lookup[code] < 0]
            raise InputError(source, VOCAB_FILE,
                             f"{len(absent)} of the {4 ** self.k} {self.k}-mers are missing (e.g. {absent[:3]})",
                             "use a complete DNABERT vocab.txt")
        self._code_to_id = lookup
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            index[token] for token in SPECIAL_TOKENS)
        self.special_ids = np.array(sorted({index[token] for token in SPECIAL_TOKENS}))
        self.kmer_ids = np.sort(lookup)

    # construction and storage ------------------------------------------------

    @classmethod
    def default(cls, k: int = 6) -> KmerTokenizer:
        if not 1 <= k <= 12:
            raise InputError(None, "k", f"k-mer length {k} is out of range",
                             "choose k between 1 and 12 (DNABERT uses 3 to 6)")
        return cls(list(SPECIAL_TOKENS) + all_kmers(k))

    @classmethod
    def from_vocab_file(cls, path: str | os.PathLike) -> KmerTokenizer:
        path = Path(path)
        if not path.is_file():
            raise InputError(path, VOCAB_FILE, "file not found",
                             "point pretrained_dir at a DNABERT checkpoint folder holding vocab.txt")
        vocab = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        return cls(vocab, source=path)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> KmerTokenizer:
        return cls.from_vocab_file(Path(directory) / VOCAB_FILE)

    def save_pretrained(self, directory: str | os.PathLike, model_max_length: int = 512) -> None:
        """Write ``vocab.txt`` and a ``tokenizer_config.json`` for ``BertTokenizer``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / VOCAB_FILE).write_text("\n".join(self.vocab) + "\n")
        config = {"tokenizer_class": "BertTokenizer", "do_lower_case": False,
                  "model_max_length": int(model_max_length), "kmer": self.k}
        (directory / TOKENIZER_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    # encoding ------------------------------------------------------------------

    def encode(self, sequence: str) -> np.ndarray:
        """Token ids of the overlapping k-mers of ``sequence`` (no [CLS]/[SEP])."""
        k = self.k
        raw = np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)
        if raw.size < k:
            return np.zeros(0, dtype=np.int64)
        codes = _BASE_CODE[raw]
        invalid = codes > 3
        # k-mer index = sum of 2-bit codes weighted 4^(k-1..0); sliding views keep it vectorised
        windows = np.lib.stride_tricks.sliding_window_view(np.where(invalid, 0, codes).astype(np.int64), k)
        index = windows @ (4 ** np.arange(k - 1, -1, -1, dtype=np.int64))
        ids = self._code_to_id[index]
        # a k-mer is unknown when any of its k bases is not A/C/G/T
        bad_count = np.convolve(invalid.astype(np.int32), np.ones(k, dtype=np.int32), mode="valid")
        ids[bad_count > 0] = self.unk_id
        return ids

    def tokens(self, sequence: str) -> list[str]:
        return [self.vocab[i] for i in self.encode(sequence)]

    def batch_encode(self, sequences: Iterable[str] | Iterable[np.ndarray], max_tokens: int = 512) -> dict:
        """Pad sequences (strings or k-mer id arrays) into ``input_ids``/``attention_mask``.

        Each row is ``[CLS] k-mers [SEP] [PAD]...``; a sequence with more than
        ``max_tokens - 2`` k-mers is an error here: split it with
        :func:`split_windows` first.
        """
        rows = [self.encode(s) if isinstance(s, str) else np.asarray(s, dtype=np.int64) for s in sequences]
        limit = max_tokens - 2
        too_long = [len(r) for r in rows if len(r) > limit]
        if too_long:
            raise ValueError(f"{len(too_long)} sequences have more than {limit} k-mers "
                             f"(longest {max(too_long)}); split them with split_windows()")
        width = max((len(r) for r in rows), default=0) + 2
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        attention = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, 0] = self.cls_id
            input_ids[i, 1:len(row) + 1] = row
            input_ids[i, len(row) + 1] = self.sep_id
            attention[i, :len(row) + 2] = 1
        return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention)}


def split_windows(kmer_ids: np.ndarray, max_kmers: int) -> list[np.ndarray]:
    """Cut a k-mer id array into consecutive non-overlapping windows of ``max_kmers``.

    Window ``i`` holds k-mers ``[i*max_kmers, (i+1)*max_kmers)``, i.e. bases
    ``[i*max_kmers, (i+1)*max_kmers + k - 1)``; the last window may be shorter.
    """
    if max_kmers < 1:
        raise ValueError(f"max_kmers must be positive, got {max_kmers}")
    return [kmer_ids[start:start + max_kmers] for start in range(0, len(kmer_ids), max_kmers)]


# ---------------------------------------------------------------------------
# Masked k-mer modelling
# ---------------------------------------------------------------------------


def span_mask(input_ids: torch.Tensor, special_ids, k: int, mask_fraction: float,
              generator: torch.Generator) -> torch.Tensor:
    """Boolean mask of contiguous k-token spans to hide, DNABERT style.

    Neighbouring k-mers overlap in k-1 bases, so a lone masked k-mer could be
    read off its neighbours. DNABERT therefore masks k consecutive tokens,
    which hides the span's middle base from every visible token. Span starts
    are drawn with probability ``mask_fraction / k`` among positions whose
    whole span lies on k-mer tokens (never on [CLS]/[SEP]/[PAD]), so about
    ``mask_fraction`` of the tokens end up masked (DNABERT's 15%); spans may
    touch or overlap, giving longer runs, but never shorter ones.
    """
    ordinary = ~torch.isin(input_ids, torch.as_tensor(special_ids, device=input_ids.device))
    length = input_ids.shape[1]
    if length < k:
        return torch.zeros_like(input_ids, dtype=torch.bool)
    # a span may start at i when tokens i .. i+k-1 are all ordinary k-mers
    can_start = ordinary[:, : length - k + 1].clone()
    for offset in range(1, k):
        can_start &= ordinary[:, offset: length - k + 1 + offset]
    draws = torch.rand(can_start.shape, generator=generator, device=generator.device)
    starts = can_start & (draws.to(input_ids.device) < mask_fraction / k)
    masked = torch.zeros_like(input_ids, dtype=torch.bool)
    for offset in range(k):
        masked[:, offset: length - k + 1 + offset] |= starts
    return masked


def mask_for_mlm(input_ids: torch.Tensor, tokenizer: KmerTokenizer, mask_fraction: float,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt a batch for masked k-mer modelling; returns (inputs, labels).

    Masked positions follow BERT's 80/10/10 rule per token: [MASK], a random
    k-mer, or unchanged. Labels are the original ids there and -100 elsewhere.
    """
    masked = span_mask(input_ids, tokenizer.special_ids, tokenizer.k, mask_fraction, generator)
    labels = torch.where(masked, input_ids, torch.full_like(input_ids, IGNORE_LABEL))
    choice = torch.rand(input_ids.shape, generator=generator, device=generator.device).to(input_ids.device)
    kmer_ids = torch.as_tensor(tokenizer.kmer_ids, device=input_ids.device)
    random_pick = torch.randint(len(kmer_ids), input_ids.shape, generator=generator,
                                device=generator.device).to(input_ids.device)
    inputs = input_ids.clone()
    inputs[masked & (choice < 0.8)] = tokenizer.mask_id
    use_random = masked & (choice >= 0.8) & (choice < 0.9)
    inputs[use_random] = kmer_ids[random_pick[use_random]]
    return inputs, labels


# ---------------------------------------------------------------------------
# Model construction and loading
# ---------------------------------------------------------------------------


def _autocast(device: torch.device, dtype: torch.dtype):
    """Mixed precision for the forward pass; weights stay float32."""
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)


def build_model(tokenizer: KmerTokenizer, dim: int, num_layers: int = 12, num_heads: int = 12,
                intermediate_size: int | None = None, max_tokens: int = 512, dropout: float = 0.1,
                seed: int = 0):
    """A fresh ``BertForMaskedLM`` over the k-mer vocabulary (DNABERT-base shape by default)."""
    from transformers import BertConfig, BertForMaskedLM

    if dim % num_heads:
        raise InputError(None, "num_heads", f"hidden size {dim} is not divisible by {num_heads} heads",
                         "choose num_heads dividing the knowledge dimension (12 for 768)")
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=dim, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=intermediate_size or 4 * dim,
        max_position_embeddings=max_tokens, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout, pad_token_id=tokenizer.pad_id, type_vocab_size=2,
    )
    torch.manual_seed(seed)
    return BertForMaskedLM(config)


def load_model(directory: str | os.PathLike):
    """Load a local DNABERT-style checkpoint folder: (BertForMaskedLM, KmerTokenizer).

    The folder needs ``config.json``, weights (``model.safetensors`` or
    ``pytorch_model.bin``) and ``vocab.txt``; nothing is fetched from a hub.
    """
    from transformers import BertForMaskedLM

    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(directory, "pretrained_dir", "folder not found",
                         "download DNABERT (e.g. DNA_bert_6) on a connected machine and give its local folder")
    weights = [name for name in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
               if (directory / name).is_file()]
    for needed, present in (("config.json", (directory / "config.json").is_file()),
                            (VOCAB_FILE, (directory / VOCAB_FILE).is_file()),
                            ("model.safetensors or pytorch_model.bin", bool(weights))):
        if not present:
            raise InputError(directory, needed, "missing from the checkpoint folder",
                             "use a complete DNABERT checkpoint folder (config.json, weights, vocab.txt)")
    tokenizer = KmerTokenizer.from_pretrained(directory)
    # transformers reads .bin weights with torch.load(weights_only=True)
    model = BertForMaskedLM.from_pretrained(directory, local_files_only=True)
    if model.config.vocab_size < tokenizer.vocab_size:
        raise InputError(directory, "config.json: vocab_size",
                         f"model has {model.config.vocab_size} token embeddings but vocab.txt lists "
                         f"{tokenizer.vocab_size} tokens", "use the vocab.txt shipped with this checkpoint")
    return model, tokenizer


def save_model(model, tokenizer: KmerTokenizer, directory: str | os.PathLike, stats: dict | None = None) -> None:
    """Write the model (safetensors), vocab and training stats into ``directory`` atomically."""
    with atomic_output(directory) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp, model_max_length=model.config.max_position_embeddings)
        if stats is not None:
            (Path(tmp) / STATS_FILE).write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


@dataclass
class _Windows:
    """Every window of every sequence as k-mer id arrays, with its sequence index."""

    kmers: list[np.ndarray]
    owner: np.ndarray


def _windows_of(tokenizer: KmerTokenizer, sequences: list[str], max_tokens: int) -> _Windows:
    kmers, owner = [], []
    for row, sequence in enumerate(sequences):
        # int32 halves the memory of a genome-wide promoter set; ids stay far below 2^31
        for window in split_windows(tokenizer.encode(sequence).astype(np.int32), max_tokens - 2):
            kmers.append(window)
            owner.append(row)
    return _Windows(kmers, np.asarray(owner, dtype=np.int64))


def _window_limit(model, max_tokens: int) -> int:
    """Tokens per window, at most what the model's position embeddings allow."""
    limit = int(model.config.max_position_embeddings)
    if max_tokens > limit:
        log.warning("max_tokens %d exceeds the model's %d positions; using %d", max_tokens, limit, limit)
    if min(max_tokens, limit) < 3:
        raise InputError(None, "max_tokens", f"window of {max_tokens} tokens holds no k-mer",
                         "use max_tokens >= 3 (DNABERT: 512)")
    return min(max_tokens, limit)


def train_masked_kmer(model, tokenizer: KmerTokenizer, sequences: list[str], epochs: int, lr: float,
                      batch_size: int, seed: int, device: str = "auto", dtype: str = "float32",
                      max_tokens: int = 512, mask_fraction: float = 0.15, weight_decay: float = 0.01,
                      warmup_fraction: float = 0.1, max_grad_norm: float = 1.0,
                      progress: bool = True) -> dict:
    """Masked k-mer modelling on ``sequences`` (pre-training or fine-tuning).

    Windows of ``max_tokens`` are the training examples. AdamW with linear
    warm-up and decay; the MLM head runs only on masked positions, which keeps
    the vocabulary projection cheap. Shuffling and masking draw from a
    generator seeded by ``seed``, so a CPU run is repeatable.
    Returns per-epoch loss and masked-token accuracy.
    """
    run_device = resolve_device(device)
    compute_dtype = resolve_dtype(dtype)
    window = _window_limit(model, max_tokens)
    windows = _windows_of(tokenizer, sequences, window)
    if epochs <= 0 or not windows.kmers:
        return {"epochs": 0, "loss": [], "masked_accuracy": [], "n_windows": len(windows.kmers)}

    torch.manual_seed(seed)  # dropout
    generator = torch.Generator(device="cpu").manual_seed(seed)
    model.to(run_device)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "LayerNorm" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    steps_per_epoch = math.ceil(len(windows.kmers) / batch_size)
    total_steps = steps_per_epoch * epochs
    warmup = max(1, int(warmup_fraction * total_steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / max(1, total_steps - warmup))))
    scaler = torch.amp.GradScaler(run_device.type, enabled=compute_dtype == torch.float16)

    losses, accuracies = [], []
    bar = tqdm(total=total_steps, desc="promoter MLM", disable=not progress, mininterval=2.0)
    for _epoch in range(epochs):
        order = torch.randperm(len(windows.kmers), generator=generator).numpy()
        loss_sum, correct, counted = 0.0, 0, 0
        for first in range(0, len(order), batch_size):
            batch = tokenizer.batch_encode([windows.kmers[i] for i in order[first:first + batch_size]], window)
            inputs, labels = mask_for_mlm(batch["input_ids"], tokenizer, mask_fraction, generator)
            inputs, labels = inputs.to(run_device), labels.to(run_device)
            attention = batch["attention_mask"].to(run_device)
            target = labels != IGNORE_LABEL
            if not target.any():
                bar.update(1)
                schedule.step()
                continue
            with _autocast(run_device, compute_dtype):
                hidden = model.base_model(input_ids=inputs, attention_mask=attention).last_hidden_state
                logits = model.cls(hidden[target]).float()
            loss = torch.nn.functional.cross_entropy(logits, labels[target])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            n = int(target.sum())
            step_loss = float(loss.detach())
            loss_sum += step_loss * n
            correct += int((logits.detach().argmax(-1) == labels[target]).sum())
            counted += n
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}", refresh=False)
        losses.append(loss_sum / max(1, counted))
        accuracies.append(correct / max(1, counted))
        log.info("epoch %d/%d: masked k-mer loss %.4f, accuracy %.4f", _epoch + 1, epochs, losses[-1], accuracies[-1])
    bar.close()
    model.eval()
    return {"epochs": epochs, "loss": losses, "masked_accuracy": accuracies, "n_windows": len(windows.kmers),
            "steps": total_steps, "window_tokens": window}


# ---------------------------------------------------------------------------
# Embedding
# ---------------------------------------------------------------------------


def _as_records(sequences) -> tuple[list[str], list[str]]:
    """(gene ids, sequences) from a dict or a DataFrame(ensembl_id, sequence)."""
    if isinstance(sequences, pd.DataFrame):
        for column in ("ensembl_id", "sequence"):
            if column not in sequences.columns:
                raise InputError(None, column, f"promoter table lacks column '{column}' "
                                 f"(has {list(sequences.columns)})",
                                 "give a table with columns ensembl_id and sequence")
        frame = sequences[["ensembl_id", "sequence"]]
        if frame.isna().any().any():
            bad = frame[frame.isna().any(axis=1)].index[:3].tolist()
            raise InputError(None, "sequence", f"missing gene id or sequence in rows {bad}",
                             "drop promoters without an id or a sequence")
        return frame["ensembl_id"].astype(str).tolist(), frame["sequence"].astype(str).tolist()
    if isinstance(sequences, Mapping):
        return [str(key) for key in sequences], [str(value) for value in sequences.values()]
    raise TypeError("sequences must be a dict {gene id: sequence} or a DataFrame(ensembl_id, sequence)")


def _usable(tokenizer: KmerTokenizer, sequences: list[str]) -> np.ndarray:
    """Records with at least one known k-mer (others carry no sequence signal)."""
    keep = np.zeros(len(sequences), dtype=bool)
    for i, sequence in enumerate(sequences):
        ids = tokenizer.encode(sequence)
        keep[i] = bool((ids != tokenizer.unk_id).any())
    return keep


@torch.no_grad()
def embed_windows(model, tokenizer: KmerTokenizer, windows: list[np.ndarray], batch_size: int = 32,
                  device: str = "cpu", dtype: str = "float32", max_tokens: int = 512,
                  progress: bool = True) -> np.ndarray:
    """Mean of the last hidden state over each window's k-mer tokens -> (n_windows, dim) float32."""
    run_device = resolve_device(device)
    compute_dtype = resolve_dtype(dtype)
    model.to(run_device)
    model.eval()
    encoder = model.base_model
    dim = model.config.hidden_size
    out = np.zeros((len(windows), dim), dtype=np.float32)
    # longest first, so batches pad little and memory peaks early
    order = np.argsort([-len(w) for w in windows], kind="stable")
    specials = torch.as_tensor(tokenizer.special_ids)
    for first in tqdm(range(0, len(order), batch_size), desc="promoter embeddings", disable=not progress,
                      mininterval=2.0):
        rows = order[first:first + batch_size]
        batch = tokenizer.batch_encode([windows[i] for i in rows], max_tokens)
        input_ids = batch["input_ids"]
        # pool k-mer tokens only: [CLS]/[SEP] are the same in every window
        pool = (~torch.isin(input_ids, specials) | (input_ids == tokenizer.unk_id)).to(run_device)
        with _autocast(run_device, compute_dtype):
            hidden = encoder(input_ids=input_ids.to(run_device),
                             attention_mask=batch["attention_mask"].to(run_device)).last_hidden_state
        hidden = hidden.float() * pool.unsqueeze(-1)
        pooled = hidden.sum(1) / pool.sum(1, keepdim=True).clamp(min=1)
        out[rows] = pooled.cpu().numpy()
    return out


def _group_mean(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    sums = np.zeros((n_groups, values.shape[1]), dtype=np.float64)
    np.add.at(sums, groups, values)
    counts = np.bincount(groups, minlength=n_groups).astype(np.float64)
    return (sums / counts[:, None]).astype(np.float32)


def embed_promoters(model, tokenizer: KmerTokenizer, sequences, batch_size: int = 32, device: str = "cpu",
                    dtype: str = "float32", max_tokens: int = 512,
                    progress: bool = True) -> tuple[list[str], np.ndarray]:
    """One vector per gene: window means averaged per promoter, promoters averaged per gene.

    ``sequences`` is a dict {gene id: sequence} or a DataFrame(ensembl_id,
    sequence) that may list several promoters per gene (as EPD does). Genes
    are returned in order of first appearance; a promoter with no A/C/G/T
    k-mer (shorter than k, or all N) is skipped, and a gene left with none
    is dropped with a warning.
    """
    gene_ids, seqs = _as_records(sequences)
    keep = _usable(tokenizer, seqs)
    if not keep.all():
        log.warning("%d promoters have no A/C/G/T k-mer and are skipped", int((~keep).sum()))
    gene_ids = [g for g, k in zip(gene_ids, keep) if k]
    seqs = [s for s, k in zip(seqs, keep) if k]
    if not seqs:
        return [], np.zeros((0, model.config.hidden_size), dtype=np.float32)
    window = _window_limit(model, max_tokens)
    windows = _windows_of(tokenizer, seqs, window)
    window_vectors = embed_windows(model, tokenizer, windows.kmers, batch_size, device, dtype, window, progress)
    promoter_vectors = _group_mean(window_vectors, windows.owner, len(seqs))
    genes, gene_index = np.unique(np.asarray(gene_ids, dtype=object), return_inverse=True)
    # np.unique sorts; restore the order of first appearance
    first_seen = np.full(len(genes), len(gene_ids))
    np.minimum.at(first_seen, gene_index, np.arange(len(gene_ids)))
    rank = np.empty(len(genes), dtype=np.int64)
    rank[np.argsort(first_seen)] = np.arange(len(genes))
    vectors = _group_mean(promoter_vectors, rank[gene_index], len(genes))
    return [str(g) for g in genes[np.argsort(first_seen)]], vectors


# ---------------------------------------------------------------------------
# The workflow's entry point and file formats
# ---------------------------------------------------------------------------


def promoter_embeddings(promoters: pd.DataFrame, out_model_dir: str | os.PathLike, dim: int, k: int = 6,
                        epochs: int = 40, lr: float = 5e-5, batch_size: int = 32, seed: int = 0,
                        device: str = "auto", dtype: str = "float32", pretrained_dir=None,
                        max_tokens: int = 512, num_layers: int = 12, num_heads: int = 12,
                        intermediate_size: int | None = None, dropout: float = 0.1,
                        mask_fraction: float = 0.15, embed_batch_size: int | None = None,
                        progress: bool = True) -> tuple[list[str], np.ndarray, dict]:
    """Train (or fine-tune DNABERT) on promoters, save the model, embed every gene.

    With ``pretrained_dir`` (a local DNABERT checkpoint folder) the model is
    loaded offline and fine-tuned, as the paper did for 40 epochs; ``k`` and
    ``dim`` must match the checkpoint. Without it, a BERT of hidden size
    ``dim`` (``num_layers``/``num_heads``/``intermediate_size``) is trained
    from scratch by the same masked k-mer objective. The trained model and
    its vocab go to ``out_model_dir`` (safetensors), reusable as a later
    ``pretrained_dir``. Returns (gene ids, float32 matrix (genes x dim), stats).
    """
    started = time.perf_counter()
    gene_ids, seqs = _as_records(promoters)
    if pretrained_dir:
        model, tokenizer = load_model(pretrained_dir)
        if tokenizer.k != k:
            raise InputError(Path(pretrained_dir) / VOCAB_FILE, "k",
                             f"the checkpoint's vocab holds {tokenizer.k}-mers but k={k} was requested",
                             f"set k to {tokenizer.k} or use the DNABERT {k}-mer checkpoint")
        if model.config.hidden_size != dim:
            raise InputError(Path(pretrained_dir) / "config.json", "hidden_size",
                             f"the checkpoint's hidden size {model.config.hidden_size} differs from dim={dim}",
                             f"set the knowledge dimension to {model.config.hidden_size} or use another checkpoint")
        source = f"pretrained:{pretrained_dir}"
    else:
        tokenizer = KmerTokenizer.default(k)
        model = build_model(tokenizer, dim, num_layers, num_heads, intermediate_size, max_tokens, dropout, seed)
        source = "scratch"

    keep = _usable(tokenizer, seqs)
    train_seqs = [s for s, ok in zip(seqs, keep) if ok]
    if not train_seqs:
        raise InputError(None, "sequence", "no promoter has an A/C/G/T k-mer",
                         f"give promoter sequences of at least k={tokenizer.k} bases")
    training = train_masked_kmer(model, tokenizer, train_seqs, epochs, lr, batch_size, seed, device, dtype,
                                 max_tokens, mask_fraction, progress=progress)
    stats = {
        "source": source, "k": tokenizer.k, "vocab_size": tokenizer.vocab_size, "dim": dim,
        "n_promoters": len(seqs), "n_promoters_skipped": int((~keep).sum()),
        "lr": lr, "batch_size": batch_size, "seed": seed, "device": str(resolve_device(device)),
        "dtype": str(dtype), "mask_fraction": mask_fraction, **training,
    }
    save_model(model, tokenizer, out_model_dir, stats)
    frame = pd.DataFrame({"ensembl_id": gene_ids, "sequence": seqs})
    ids, vectors = embed_promoters(model, tokenizer, frame, embed_batch_size or batch_size, device, dtype,
                                   max_tokens, progress)
    # Mean-pooled BERT outputs share one large common direction (random genes
    # have cosine ~0.96); removing the mean over genes keeps what sets them apart.
    vectors = vectors - vectors.mean(axis=0, keepdims=True)
    stats["n_genes"] = len(ids)
    stats["n_genes_dropped"] = len(set(gene_ids)) - len(ids)
    stats["seconds"] = round(time.perf_counter() - started, 2)
    return ids, vectors, stats


def kmer_profiles(promoters: pd.DataFrame, k: int) -> GeneVectors:
    """Baseline promoter vectors: centred k-mer frequencies, averaged per gene."""
    tokenizer = KmerTokenizer.default(k)
    first = min(tokenizer.kmer_ids)
    rows = []
    for sequence in promoters["sequence"]:
        ids = tokenizer.encode(sequence)
        counts = np.bincount(ids[ids >= first] - first, minlength=4 ** k).astype(np.float32)
        rows.append(counts / max(counts.sum(), 1.0))
    profiles = pd.DataFrame(np.vstack(rows)).groupby(promoters["ensembl_id"].to_numpy(), sort=False).mean()
    matrix = profiles.to_numpy(np.float32)
    return GeneVectors(list(profiles.index), matrix - matrix.mean(axis=0))


def promoter_quality(vectors: GeneVectors, promoters: pd.DataFrame, families: pd.DataFrame, k: int,
                     seed: int) -> dict:
    """Do promoters of one gene family embed closer than random genes?

    Scored for the model's vectors and, as the baseline a model must beat,
    for plain k-mer frequency profiles of the same promoters.
    """
    pairs = family_pairs(families, max_pairs_per_group=200, seed=seed)
    return {"family_pairs": pair_auc(vectors, pairs, seed=seed),
            "family_pairs_kmer_baseline": pair_auc(kmer_profiles(promoters, k), pairs, seed=seed)}

