"""DeepSEM (Shu et al. 2021, Nature Computational Science) in plain torch, and its GeneCompass update.

The model
---------
DeepSEM is a β-VAE whose encoder and decoder are wrapped in a linear
structural equation model over the m genes. With genes as rows (one column
per cell) the SEM reads ``X = Wᵀ X + Z``: gene j is ``x_j = Σ_i W_ij x_i + z_j``,
so ``W[i, j]`` is the effect of gene i on gene j (row = regulator). Then

- encoder: ``Z = (I − Wᵀ) f₁(X)``, decoder: ``X̂ = f₂((I − Wᵀ)⁻¹ Z)``.

This module keeps cells as rows (a batch is cells × genes), where the same
equations read ``z = f₁(x) (I − W)`` and ``x̂ = f₂(z (I − W)⁻¹)``; ``W`` is
stored with ``W[source, target]``. (The released code stores the transpose,
``adj_A[target, source]``, and multiplies by ``I − adj_Aᵀ``: the same model.)

Details follow the released non-cell-type-specific GRN code:

- f₁ is one MLP shared by all genes, applied to each gene's scalar value
  together with the one-hot mixture label (a constant 1, since the GRN task
  uses K = 1 Gaussian component): Linear(2, h) → tanh → Linear(h, h) → tanh,
  then two Linear(h, 1) heads for the mean and the log-variance. Both are
  multiplied by ``(I − W)``; the variance is ``exp`` of the transformed
  log-variance; ``z = mean + ε·sqrt(var + 1e-10)``.
- f₂ is one MLP shared by all genes applied to each gene's latent value:
  Linear(1, h) → tanh → Linear(h, h) → tanh → Linear(h, 1).
- The prior p(z | y) has its own mean and log-variance MLPs from the label
  (Linear(1, h) → tanh → Linear(h, m)), transformed by ``(I − W)`` too.
- Loss: mean squared reconstruction error + β · KL, the KL estimated from
  the one sample ``z`` as ``log q(z|x) − log p(z)`` with Gaussian
  log-densities averaged over genes (variance + 1e-8), averaged over cells;
  plus the sparsity penalty ``α · mean(|W|)`` over all m² entries.
- ``W``: diagonal zero at the start and masked to zero in every forward pass
  (it never changes); off-diagonal entries start at ``1/(m − 1)`` plus
  noise: Gaussian ``N(1/(m−1), ε²)`` as the GeneCompass methods write
  (default), or the released DeepSEM code's ``1/(m−1) + U(0, 2ε)``
  (``w_init="uniform"``); ε = 1e-4 (the papers only say "a small value";
  the code's uniform noise spans 2e-4). ``w_init_mean`` replaces 1/(m−1).
  Mind the conditioning: with off-diagonal mean 1/(m−1) every row of W
  sums to 1 and ``I − W`` is singular but for the noise (``(I − W)·1 =
  −noise·1``). The released uniform noise (mean ε) keeps its smallest
  eigenvalue near −(m−1)ε (about −0.1 for BEELINE's ~1,100 genes, −0.003 for
  30 genes); the papers' zero-mean Gaussian leaves it at O(ε). That
  decides the result: on BEELINE mDC (821 genes) DeepSEM with the Gaussian
  noise ranks edges at chance (EPR 0.92–1.01), with the uniform noise well
  above it (2.0–2.8; ``bench/fidelity_deepsem.py``, README "Fidelity"), so
  use ``w_init="uniform"`` with ``1/(m−1)`` (the real config does). With a
  few tens of genes the VAE often collapses to predicting the mean
  (reconstruction error ≈ 1) and W learns nothing. For small gene
  sets set ``w_init_mean=0`` (W starts near zero, ``I − W`` ≈ I), and mind
  that the L1 weight per entry is α/m², so α = 100 is strong for few genes.
- MLP weights: Xavier-normal with zero biases, as the released code sets
  them (``mlp_init="xavier_normal"``); the GeneCompass methods name
  "kaiming_uniform", torch's ``nn.Linear`` default, available as
  ``mlp_init="kaiming_uniform"``.
- Optimisation alternates by epoch: ``mlp_epochs`` (K1 = 1) epochs update
  the MLPs with RMSprop at ``lr`` while W is frozen, then ``w_epochs``
  (K2 = 2) epochs update only W with a second RMSprop at ``lr · 0.2``.
  A StepLR schedule (γ = 0.95) acts on the MLP optimiser only. The released
  defaults pass ``step_size=0.99`` to StepLR. Under the torch it pins (1.2),
  whose StepLR computes ``γ^(epoch // step_size)``, that decays the MLP
  learning rate by 0.95 every epoch; under torch ≥ 1.4 (chained form,
  ``epoch % 0.99 != 0``) it never decays. ``lr_step_size=None`` (default)
  is the latter; ``lr_step_size=1`` the former, the behaviour of the
  environment the released README pins (:meth:`DeepSEMConfig.released`).
- Input: z-normalised log expression, per gene across cells (population
  standard deviation); a constant gene becomes all zeros (the released code
  would divide by zero).
- ``cell_type_specific=True`` is the released code's other GRN script (the
  one its paper used for cell-type-specific ChIP-seq and lof/gof networks):
  each gene is centred and scaled by the mean and std of its non-zero values
  only, then clipped to ±10, and the reconstruction error counts the non-zero
  entries of the input only (a dropout mask). Its released settings are α = 10,
  β = 0.1 (:meth:`DeepSEMConfig.released`).
- Defaults: the GeneCompass paper's lr 1e-4, batch 64, 40 epochs (DeepSEM's
  own default is 120 epochs); DeepSEM's α = 100, β = 1, hidden size 128.
  :meth:`DeepSEMConfig.released` gives the released ``main.py`` settings.
- Output: |W[TF, gene]| over TF→gene pairs, ranked (:meth:`DeepSEMResult.edges`).

Left out, on purpose: the categorical (Gumbel-softmax) branch of the
encoder. With K = 1 its output is identically 1 and its loss term the
constant ``β·log 10``, so it changes nothing in training; it is not built.
DeepSEM's ensemble (its paper averages |W| over 10 runs) is
:func:`train_ensemble`; the workflow's rule trains one run.

The GeneCompass update
----------------------
See :mod:`genecompass.tasks.grn.prior` (:func:`~genecompass.tasks.grn.prior.embedding_prior`,
:func:`~genecompass.tasks.grn.prior.combine_with_prior`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from genecompass.devices import resolve_device
from genecompass.errors import InputError
from genecompass.tasks.grn.beeline import edges_from_matrix

log = logging.getLogger(__name__)

W_INITS = ("gaussian", "uniform")
MLP_INITS = ("xavier_normal", "kaiming_uniform")


@dataclass(frozen=True)
class DeepSEMConfig:
    """Hyper-parameters; defaults as described in the module docstring."""

    n_epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-4
    w_lr_factor: float = 0.2
    lr_step_size: int | None = None
    lr_gamma: float = 0.95
    n_hidden: int = 128
    alpha: float = 100.0
    beta: float = 1.0
    mlp_epochs: int = 1
    w_epochs: int = 2
    init_std: float = 1e-4
    w_init: str = "gaussian"
    w_init_mean: float | None = None
    mlp_init: str = "xavier_normal"
    cell_type_specific: bool = False

    @classmethod
    def released(cls, cell_type_specific: bool = False, **overrides) -> DeepSEMConfig:
        """The released ``main.py`` settings of DeepSEM's two GRN tasks as they ran under its torch 1.2
        (120 epochs, uniform W noise, the MLP learning rate × 0.95 every epoch; α = 100, β = 1 for the
        non-specific task, α = 10, β = 0.1 for the cell-type-specific one)."""
        values = {"n_epochs": 120, "w_init": "uniform", "lr_step_size": 1, "cell_type_specific": cell_type_specific,
                  "alpha": 10.0 if cell_type_specific else 100.0, "beta": 0.1 if cell_type_specific else 1.0}
        return cls(**{**values, **overrides})

    def __post_init__(self) -> None:
        positive = {"n_epochs": self.n_epochs, "batch_size": self.batch_size, "lr": self.lr,
                    "n_hidden": self.n_hidden, "mlp_epochs": self.mlp_epochs, "w_epochs": self.w_epochs}
        for name, value in positive.items():
            if not value > 0:
                raise InputError(None, name, f"must be positive, got {value}", "use the DeepSEM default")
        for name, value in {"alpha": self.alpha, "beta": self.beta, "init_std": self.init_std,
                            "w_lr_factor": self.w_lr_factor}.items():
            if not value >= 0:
                raise InputError(None, name, f"must not be negative, got {value}", "use the DeepSEM default")
        if self.lr_step_size is not None and self.lr_step_size < 1:
            raise InputError(None, "lr_step_size", f"must be a positive number of epochs or null, got "
                             f"{self.lr_step_size}", "use null (no decay, the released default) or 1")
        if self.w_init not in W_INITS:
            raise InputError(None, "w_init", f"unknown '{self.w_init}'", f"use one of {W_INITS}")
        if self.mlp_init not in MLP_INITS:
            raise InputError(None, "mlp_init", f"unknown '{self.mlp_init}'", f"use one of {MLP_INITS}")

    @classmethod
    def from_dict(cls, values: dict | None) -> DeepSEMConfig:
        """From a config mapping; unknown keys are an input error."""
        values = dict(values or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(None, f"deepsem.{unknown[0]}", "unknown DeepSEM setting", f"use one of {sorted(known)}")
        for name, value in values.items():
            kind = _FIELD_TYPES.get(name)
            if kind is None or value is None:
                continue
            try:  # YAML reads 1e-4 (no dot) as a string
                values[name] = kind(value)
            except (TypeError, ValueError) as error:
                raise InputError(None, f"deepsem.{name}", f"'{value}' is not a {kind.__name__}",
                                 "give a number") from error
        return cls(**values)


_FIELD_TYPES = {"n_epochs": int, "batch_size": int, "lr": float, "w_lr_factor": float, "lr_step_size": int,
                "lr_gamma": float, "n_hidden": int, "alpha": float, "beta": float, "mlp_epochs": int,
                "w_epochs": int, "init_std": float, "w_init_mean": float}


class DeepSEMModel(nn.Module):
    """The β-VAE with the SEM layer; ``w[source, target]`` (see the module docstring)."""

    def __init__(self, n_genes: int, n_hidden: int, w_init: torch.Tensor):
        super().__init__()
        if w_init.shape != (n_genes, n_genes):
            raise ValueError(f"w_init of shape {tuple(w_init.shape)} for {n_genes} genes")
        self.n_genes = n_genes
        self.w = nn.Parameter(w_init.clone().float())
        self.register_buffer("off_diagonal", 1.0 - torch.eye(n_genes))
        self.register_buffer("identity", torch.eye(n_genes))
        self.register_buffer("label", torch.ones(1, 1))  # the K = 1 mixture label
        self.encoder = nn.Sequential(nn.Linear(2, n_hidden), nn.Tanh(), nn.Linear(n_hidden, n_hidden), nn.Tanh())
        self.encoder_mean = nn.Linear(n_hidden, 1)
        self.encoder_logvar = nn.Linear(n_hidden, 1)
        self.decoder = nn.Sequential(nn.Linear(1, n_hidden), nn.Tanh(), nn.Linear(n_hidden, n_hidden), nn.Tanh(),
                                     nn.Linear(n_hidden, 1))
        self.prior_mean = nn.Sequential(nn.Linear(1, n_hidden), nn.Tanh(), nn.Linear(n_hidden, n_genes))
        self.prior_logvar = nn.Sequential(nn.Linear(1, n_hidden), nn.Tanh(), nn.Linear(n_hidden, n_genes))

    def mlp_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "w"]

    def adjacency(self) -> torch.Tensor:
        """W with its diagonal forced to zero: ``[source, target]``."""
        return self.w * self.off_diagonal

    def sem_matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``I − W`` (cells-as-rows form of the paper's ``I − Wᵀ``) and its inverse."""
        transform = self.identity - self.adjacency()
        return transform, torch.linalg.inv(transform)

    def forward(self, x: torch.Tensor, transform: torch.Tensor, inverse: torch.Tensor,
                noise: torch.Tensor, observed: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Loss terms for a batch ``x`` (cells × genes); ``noise`` ~ N(0, 1) of the same shape;
        ``observed`` (0/1, same shape): the entries the reconstruction error counts (default all)."""
        per_gene = torch.stack([x, torch.ones_like(x)], dim=-1)  # (value, label) per gene
        hidden = self.encoder(per_gene)
        mean = self.encoder_mean(hidden).squeeze(-1) @ transform
        var = torch.exp(self.encoder_logvar(hidden).squeeze(-1) @ transform)
        z = mean + noise * torch.sqrt(var + 1e-10)
        reconstruction = self.decoder((z @ inverse).unsqueeze(-1)).squeeze(-1)
        prior_mean = self.prior_mean(self.label) @ transform
        prior_var = torch.exp(self.prior_logvar(self.label) @ transform)
        squared = (x - reconstruction) ** 2
        if observed is None:
            rec = torch.mean(squared)
        else:
            rec = torch.sum(squared * observed) / torch.sum(observed).clamp(min=1.0)
        kl = torch.mean(_log_normal(z, mean, var) - _log_normal(z, prior_mean, prior_var))
        return {"rec": rec, "kl": kl, "reconstruction": reconstruction, "mean": mean}


def _log_normal(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Gaussian log-density averaged over genes (the last axis), one value per cell."""
    var = var + 1e-8
    return -0.5 * torch.mean(math.log(2.0 * math.pi) + torch.log(var) + (x - mean) ** 2 / var, dim=-1)


def initial_w(n_genes: int, init_std: float = 1e-4, kind: str = "gaussian",
              generator: torch.Generator | None = None, mean: float | None = None) -> torch.Tensor:
    """Off-diagonal ``mean`` (default ``1/(m−1)``) plus noise (``N(0, ε²)`` or ``U(0, 2ε)``), diagonal zero."""
    if n_genes < 2:
        raise InputError(None, "genes", f"DeepSEM needs at least 2 genes, got {n_genes}", "give more genes")
    if kind not in W_INITS:
        raise InputError(None, "w_init", f"unknown '{kind}'", f"use one of {W_INITS}")
    base = torch.full((n_genes, n_genes), 1.0 / (n_genes - 1) if mean is None else float(mean), dtype=torch.float64)
    if kind == "gaussian":
        noise = torch.randn(n_genes, n_genes, generator=generator, dtype=torch.float64) * init_std
    else:
        noise = torch.rand(n_genes, n_genes, generator=generator, dtype=torch.float64) * (2 * init_std)
    w = base + noise
    w.fill_diagonal_(0.0)
    return w.float()


def _init_mlps(model: DeepSEMModel, kind: str, generator: torch.Generator) -> None:
    """Seeded MLP initialisation without touching torch's global random state."""
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, nn.Linear):
                continue
            fan_out, fan_in = module.weight.shape
            if kind == "xavier_normal":
                std = math.sqrt(2.0 / (fan_in + fan_out))
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * std)
                module.bias.zero_()
            else:  # torch's nn.Linear default: kaiming_uniform(a=√5) weights, uniform biases
                bound = 1.0 / math.sqrt(fan_in)
                module.weight.copy_((torch.rand(module.weight.shape, generator=generator) * 2 - 1) * bound)
                module.bias.copy_((torch.rand(module.bias.shape, generator=generator) * 2 - 1) * bound)


def zscore(expression: pd.DataFrame, nonzero: bool = False, clip: float | None = None) -> np.ndarray:
    """Cells × genes float32: each gene centred and divided by its std across cells (constant genes → 0).

    ``nonzero``: the mean and std are those of the gene's non-zero values (the
    zeros are scaled with them too); a gene with fewer than two distinct
    non-zero values becomes all zeros. ``clip``: then limit to ±clip.
    """
    values = expression.to_numpy(dtype=np.float64).T
    if nonzero:
        present = values != 0
        counts = present.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(present, values, 0.0).sum(axis=0) / counts
            std = np.sqrt(np.where(present, (values - mean) ** 2, 0.0).sum(axis=0) / counts)
        mean, std = np.nan_to_num(mean), np.nan_to_num(std)
    else:
        mean = values.mean(axis=0)
        std = values.std(axis=0)
    out = np.zeros_like(values)
    varying = std > 0
    out[:, varying] = (values[:, varying] - mean[varying]) / std[varying]
    if clip is not None:
        np.clip(out, -clip, clip, out=out)
    return out.astype(np.float32)


@dataclass
class DeepSEMResult:
    """Trained W (``weights[source, target]``, diagonal 0) and the per-epoch loss history."""

    genes: list[str]
    weights: np.ndarray
    history: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"

    def edges(self, tfs) -> pd.DataFrame:
        """Ranked TF→gene table: ``source, target, score = |W[source, target]|``."""
        return edges_from_matrix(self.weights, self.genes, tfs, absolute=True)

    def weight_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.weights, index=self.genes, columns=self.genes)


def train_deepsem(expression: pd.DataFrame, config: DeepSEMConfig | dict | None = None, seed: int = 0,
                  device: str = "auto", progress: bool = False) -> DeepSEMResult:
    """Train DeepSEM on ``expression`` (genes × cells, log-transformed; z-normalised here).

    Every random draw (W, MLP weights, batch order, reparameterisation
    noise) comes from generators seeded with ``seed``; torch's global random
    state is not touched. On CPU the same inputs and seed give the same W.
    """
    if not isinstance(config, DeepSEMConfig):
        config = DeepSEMConfig.from_dict(config)
    torch_device = resolve_device(device)
    genes = [str(gene) for gene in expression.index]
    specific = config.cell_type_specific
    data = torch.from_numpy(zscore(expression, nonzero=specific, clip=10.0 if specific else None)).to(torch_device)
    observed = (torch.from_numpy(expression.to_numpy(dtype=np.float32).T != 0).float().to(torch_device)
                if specific else None)
    n_cells, n_genes = data.shape
    if n_cells < 2:
        raise InputError(None, "cells", f"DeepSEM needs at least 2 cells, got {n_cells}", "give more cells")

    cpu = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device=torch_device).manual_seed(seed + 1)
    w_start = initial_w(n_genes, config.init_std, config.w_init, cpu, config.w_init_mean)
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own default init draws from the global generator
        model = DeepSEMModel(n_genes, config.n_hidden, w_start)
    _init_mlps(model, config.mlp_init, cpu)
    model.to(torch_device)
    mlp_params = model.mlp_parameters()
    mlp_optimizer = torch.optim.RMSprop(mlp_params, lr=config.lr)
    w_optimizer = torch.optim.RMSprop([model.w], lr=config.lr * config.w_lr_factor)
    scheduler = (torch.optim.lr_scheduler.StepLR(mlp_optimizer, step_size=config.lr_step_size, gamma=config.lr_gamma)
                 if config.lr_step_size else None)

    history = []
    epochs = range(config.n_epochs)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc="DeepSEM epochs", mininterval=10)
    model.train()
    cycle = config.mlp_epochs + config.w_epochs
    for epoch in epochs:
        w_phase = epoch % cycle >= config.mlp_epochs
        model.w.requires_grad_(w_phase)
        for param in mlp_params:
            param.requires_grad_(not w_phase)
        optimizer = w_optimizer if w_phase else mlp_optimizer
        if not w_phase:
            with torch.no_grad():
                fixed = model.sem_matrices()
        order = torch.randperm(n_cells, generator=cpu).to(torch_device)
        sums = {"loss": 0.0, "rec": 0.0, "kl": 0.0, "sparse": 0.0}
        n_batches = 0
        for start in range(0, n_cells, config.batch_size):
            rows = order[start:start + config.batch_size]
            batch = data[rows]
            transform, inverse = model.sem_matrices() if w_phase else fixed
            noise = torch.randn(batch.shape, generator=noise_gen, device=torch_device)
            optimizer.zero_grad(set_to_none=True)
            out = model(batch, transform, inverse, noise, None if observed is None else observed[rows])
            sparse = config.alpha * torch.mean(torch.abs(model.adjacency()))
            loss = out["rec"] + config.beta * out["kl"] + sparse
            if not torch.isfinite(loss):
                raise FloatingPointError(f"DeepSEM loss became {loss.item()} at epoch {epoch}; "
                                         "lower lr or check the input for extreme values")
            loss.backward()
            optimizer.step()
            n_batches += 1
            for key, value in (("loss", loss), ("rec", out["rec"]), ("kl", out["kl"]), ("sparse", sparse)):
                sums[key] += float(value.detach())
        if scheduler is not None:
            scheduler.step()
        row = {"epoch": epoch, "phase": "W" if w_phase else "MLP",
               **{key: value / n_batches for key, value in sums.items()}}
        history.append(row)
        log.info("DeepSEM epoch %d (%s): loss %.4f rec %.4f kl %.4f sparse %.4f", epoch, row["phase"],
                 row["loss"], row["rec"], row["kl"], row["sparse"])
    weights = model.adjacency().detach().cpu().numpy().astype(np.float64)
    return DeepSEMResult(genes=genes, weights=weights, history=history, config=asdict(config), seed=seed,
                         device=str(torch_device))


def train_ensemble(expression: pd.DataFrame, config: DeepSEMConfig | dict | None = None, runs: int = 10,
                   seed: int = 0, device: str = "auto") -> DeepSEMResult:
    """DeepSEM's ensemble: ``runs`` trainings (seeds ``seed``, ``seed + 1``, ...), |W| averaged."""
    if runs < 1:
        raise InputError(None, "runs", f"must be at least 1, got {runs}", "use 10 (DeepSEM's paper) or 1")
    results = [train_deepsem(expression, config, seed=seed + run, device=device) for run in range(runs)]
    weights = np.mean([np.abs(result.weights) for result in results], axis=0)
    return DeepSEMResult(genes=results[0].genes, weights=weights,
                         history=[row | {"run": run} for run, result in enumerate(results) for row in result.history],
                         config=results[0].config | {"runs": runs}, seed=seed, device=results[0].device)
