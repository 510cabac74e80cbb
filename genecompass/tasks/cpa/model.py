"""CPA, the Compositional Perturbation Autoencoder (Lotfollahi et al., Mol. Syst.
Biol. 2023), re-implemented in torch.

The published package (``cpa-tools``) needs scvi-tools and pytorch-lightning
versions that do not run on our stack. The method follows the package and the
original facebookresearch/CPA code:

- an encoder MLP (Linear + BatchNorm + ReLU, plain Linear last) maps a cell's
  log-normalised expression to a basal latent ``z_basal``;
- each drug has a learned embedding scaled by a learned dose-response
  ``f_drug(dose)`` (``logsigm``, ``sigm`` or a per-drug ``mlp``) with
  ``f(0) = 0``, so control cells get no drug term; each categorical covariate
  has an embedding table; all are added to ``z_basal``;
- a decoder MLP gives per-gene Gaussian means and variances (softplus + 1e-3);
  the reconstruction loss is the Gaussian negative log-likelihood;
- adversarial MLPs predict the drug (control is a class of its own) and each
  covariate from ``z_basal``. Step ``i`` updates the adversaries when
  ``i % adversary_steps != 0`` (cross-entropy + ``penalty_adversary`` x the mean
  squared gradient of their logits w.r.t. ``z_basal``), otherwise the
  autoencoder and dosers (reconstruction - ``reg_adversary`` x adversary loss);
- three Adam optimisers (autoencoder, adversaries, dosers), each with a StepLR
  schedule (``step_size_lr`` epochs, gamma 0.9 as in cpa-tools).

Doses are divided by the largest training dose so they lie in (0, 1]. The
model of the epoch with the lowest validation reconstruction loss is kept
(early stopping after ``patience`` epochs without improvement).

GeneCompass integration: with ``gene_decoder="embedding"`` the decoder's
per-gene output layer is computed from fixed GeneCompass gene vectors
(:class:`GeneEmbeddingReadout`); everything else is unchanged.
"""

from __future__ import annotations

import copy
import logging
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genecompass.devices import resolve_device
from genecompass.utils import settings_from_config

logger = logging.getLogger(__name__)

DOSERS = ("logsigm", "sigm", "mlp")
GENE_DECODERS = ("free", "embedding")
MIN_VARIANCE = 1e-3  # CPA's floor on the decoded variances


@dataclass
class CpaSettings:
    # Sources: "CPA" = the facebookresearch code's defaults, "cpa-tools" = its CPATrainingPlan defaults.
    latent_dim: int = 64             # CPA: 128; smaller for a CPU demo
    encoder_width: int = 256         # CPA: 128 (sweep 128-1024)
    encoder_depth: int = 3           # CPA: 3
    decoder_width: int = 256
    decoder_depth: int = 3
    adversary_width: int = 64        # CPA: 64
    adversary_depth: int = 2         # CPA: 2
    dose_transform: str = "max"      # max: dose / largest dose (CPA); log: log10 dose over the range
    doser: str = "logsigm"           # logsigm | sigm | mlp (cpa-tools: logsigm)
    doser_width: int = 64            # mlp doser only (CPA: 128)
    doser_depth: int = 2             # mlp doser only (CPA: 2)
    reg_adversary: float = 5.0       # cpa-tools: 5 (CPA: 60)
    penalty_adversary: float = 3.0   # cpa-tools: 3 (CPA: 60)
    adversary_steps: int = 3         # CPA and cpa-tools: 3
    lr: float = 4e-3                 # CPA: 4e-3
    weight_decay: float = 4e-7       # CPA: 4e-7
    adversary_lr: float = 3e-3       # CPA: 3e-4; a faster adversary disentangles within a short CPU run
    adversary_weight_decay: float = 4e-7
    doser_lr: float = 4e-3           # CPA: 4e-3
    doser_weight_decay: float = 1e-7  # CPA: 1e-7
    batch_size: int = 128            # CPA: 256 (sweep 64-512); more steps per epoch on small data
    epochs: int = 100
    step_size_lr: int = 45           # cpa-tools: 45 (learning rates x 0.9 every 45 epochs)
    patience: int = 20               # epochs without a better validation loss before stopping (CPA: 20)
    gene_decoder: str = "free"       # free: CPA's own last layer; embedding: from GeneCompass gene vectors
    device: str = "cpu"
    seed: int = 0

    @classmethod
    def from_config(cls, config: dict | None, seed: int) -> CpaSettings:
        settings = settings_from_config(cls, config, "tasks.cpa.model", seed=seed)
        if settings.dose_transform not in ("max", "log"):
            raise ValueError(f"tasks.cpa.model.dose_transform: use 'max' or 'log', not {settings.dose_transform!r}")
        if settings.doser not in DOSERS:
            raise ValueError(f"tasks.cpa.model.doser: use one of {list(DOSERS)}, not {settings.doser!r}")
        if settings.gene_decoder not in GENE_DECODERS:
            raise ValueError(f"tasks.cpa.model.gene_decoder: use one of {list(GENE_DECODERS)}, "
                             f"not {settings.gene_decoder!r}")
        for name in ("adversary_steps", "epochs", "step_size_lr", "patience"):
            if getattr(settings, name) < 1:
                raise ValueError(f"tasks.cpa.model.{name}: must be at least 1")
        if settings.batch_size < 2:
            raise ValueError("tasks.cpa.model.batch_size: must be at least 2 (BatchNorm)")
        return settings


def hidden_layers(sizes: list[int], batch_norm: bool = True) -> list[nn.Module]:
    """Linear (+ BatchNorm) + ReLU for each consecutive pair of ``sizes``."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), *([nn.BatchNorm1d(b)] if batch_norm else []), nn.ReLU()]
    return layers


def mlp(sizes: list[int], batch_norm: bool = True) -> nn.Sequential:
    """CPA's MLP: hidden layers with BatchNorm and ReLU, a plain Linear last."""
    return nn.Sequential(*hidden_layers(sizes[:-1], batch_norm), nn.Linear(sizes[-2], sizes[-1]))


class Doser(nn.Module):
    """Learned per-drug dose-response ``f_drug(dose)`` with ``f(0) = 0``."""

    def __init__(self, n_drugs: int, kind: str, width: int, depth: int):
        super().__init__()
        self.kind = kind
        if kind == "mlp":
            self.nets = nn.ModuleList(mlp([1] + [width] * depth + [1], batch_norm=False) for _ in range(n_drugs))
        else:
            self.beta = nn.Parameter(torch.ones(n_drugs))
            self.bias = nn.Parameter(torch.zeros(n_drugs))

    def forward(self, drug: torch.Tensor, dose: torch.Tensor) -> torch.Tensor:
        """``drug``: (cells,) drug indices; ``dose``: (cells,) scaled doses."""
        if self.kind == "mlp":
            out = dose.new_zeros(dose.shape)
            for d in drug.unique().tolist():
                rows = drug == d
                net = self.nets[d]
                at_zero = torch.sigmoid(net(dose.new_zeros(1, 1)))[0, 0]
                # Subtracting the value at 0 keeps f continuous; the mask makes f(0) exactly 0 whatever
                # the rounding of the two evaluations (CPA masks the same way).
                out[rows] = (torch.sigmoid(net(dose[rows, None]))[:, 0] - at_zero) * (dose[rows] > 0)
            return out
        x = torch.log1p(dose) if self.kind == "logsigm" else dose
        beta, bias = self.beta[drug], self.bias[drug]
        return torch.sigmoid(x * beta + bias) - torch.sigmoid(bias)


class GeneEmbeddingReadout(nn.Module):
    """The decoder's per-gene output layer, computed from fixed gene vectors.

    For each head (mean, variance) the weight row of gene ``g`` is ``P_k e_g``,
    with ``P_k`` a trained projection of the gene's vector ``e_g`` (standardised
    by the vectors' overall std and divided by sqrt(dim), so about unit norm);
    genes without a vector (``missing``) get a learned row. Each gene also has a
    learned bias per head. Returns (cells, 2 x genes) like
    ``nn.Linear(width, 2 * n_genes)``: means first, then raw variances.
    """

    def __init__(self, vectors: np.ndarray, missing: np.ndarray, width: int):
        super().__init__()
        vectors = np.array(vectors, np.float32)
        missing = np.asarray(missing, bool)
        if vectors.ndim != 2 or missing.shape != (len(vectors),):
            raise ValueError(f"gene vectors {vectors.shape} and missing mask {missing.shape} do not match")
        n_genes, dim = vectors.shape
        scale = vectors[~missing].std() if (~missing).any() else 1.0
        # Zeroed so that NaN placeholders of missing genes cannot reach the gradients.
        vectors[missing] = 0.0
        # Unit-norm vectors keep the rows P e_g on a free layer's scale, and Adam's steps on P move them
        # about as fast as it moves a free layer's weights.
        vectors = vectors / (max(float(scale), 1e-6) * math.sqrt(dim))
        self.register_buffer("vectors", torch.from_numpy(vectors))
        self.register_buffer("missing_index", torch.from_numpy(np.flatnonzero(missing)))
        self.projections = nn.ModuleList(nn.Linear(dim, width, bias=False) for _ in range(2))
        for projection in self.projections:
            # Rows then start at the scale of nn.Linear's default init (std 1 / sqrt(3 width)).
            nn.init.normal_(projection.weight, std=1.0 / math.sqrt(3 * width))
        bound = 1.0 / math.sqrt(width)
        self.fallback = nn.Parameter(torch.empty(2, len(self.missing_index), width).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(2, n_genes))

    def weights(self) -> torch.Tensor:
        """(2, genes, width): the weight rows of the mean and variance heads."""
        return torch.stack([projection(self.vectors).index_put((self.missing_index,), self.fallback[k])
                            for k, projection in enumerate(self.projections)])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        weights = self.weights()
        return h @ weights.reshape(-1, weights.shape[-1]).T + self.bias.reshape(-1)


class CpaModel(nn.Module):
    """CPA's networks: encoder, drug and covariate embeddings, dosers, decoder and adversaries."""

    def __init__(self, n_genes: int, n_drugs: int, n_levels: list[int], settings: CpaSettings,
                 gene_vectors: tuple[np.ndarray, np.ndarray] | None = None):
        super().__init__()
        s, k = settings, settings.latent_dim
        self.n_drugs = n_drugs
        self.encoder = mlp([n_genes] + [s.encoder_width] * s.encoder_depth + [k])
        self.decoder = nn.Sequential(*hidden_layers([k] + [s.decoder_width] * s.decoder_depth))
        self.readout = (GeneEmbeddingReadout(*gene_vectors, s.decoder_width) if gene_vectors is not None
                        else nn.Linear(s.decoder_width, 2 * n_genes))
        self.drug_embedding = nn.Embedding(n_drugs, k)
        self.doser = Doser(n_drugs, s.doser, s.doser_width, s.doser_depth)
        self.covariate_embeddings = nn.ModuleList(nn.Embedding(n, k) for n in n_levels)
        adversary = [k] + [s.adversary_width] * s.adversary_depth
        self.drug_adversary = mlp(adversary + [n_drugs + 1])
        self.covariate_adversaries = nn.ModuleList(mlp(adversary + [n]) for n in n_levels)

    def autoencoder_parameters(self) -> list[nn.Parameter]:
        parts = (self.encoder, self.decoder, self.readout, self.drug_embedding, self.covariate_embeddings)
        return [p for part in parts for p in part.parameters()]

    def adversary_parameters(self) -> list[nn.Parameter]:
        return [*self.drug_adversary.parameters(), *self.covariate_adversaries.parameters()]

    def drug_latent(self, drug: torch.Tensor, dose: torch.Tensor) -> torch.Tensor:
        # Controls carry the index n_drugs and dose 0; f(0) = 0 makes the embedding they borrow irrelevant.
        index = drug.clamp_max(self.n_drugs - 1)
        return self.doser(index, dose)[:, None] * self.drug_embedding(index)

    def decode(self, z_basal: torch.Tensor, drug: torch.Tensor, dose: torch.Tensor,
               covariates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and variances of the cells ``z_basal`` given drugs, scaled doses and covariate codes."""
        z = z_basal + self.drug_latent(drug, dose)
        for i, embedding in enumerate(self.covariate_embeddings):
            z = z + embedding(covariates[:, i])
        mean, raw_variance = self.readout(self.decoder(z)).chunk(2, dim=1)
        return mean, F.softplus(raw_variance) + MIN_VARIANCE

    def adversary_logits(self, z_basal: torch.Tensor) -> list[torch.Tensor]:
        """Logits of the drug adversary, then of each covariate adversary."""
        return [self.drug_adversary(z_basal), *(adversary(z_basal) for adversary in self.covariate_adversaries)]


class Cpa:
    """Training and counterfactual prediction around :class:`CpaModel` on one dataset."""

    def __init__(self, X: np.ndarray, drugs: np.ndarray, doses: np.ndarray, covariates: dict[str, np.ndarray],
                 settings: CpaSettings, gene_vectors: tuple[np.ndarray, np.ndarray] | None = None,
                 control_label: str = "control"):
        """X: cells x genes (float32, dense). drugs: per-cell drug name; cells whose drug == control_label are
        controls (dose ignored, treated as 0). doses: per-cell float. covariates: name -> per-cell labels.
        gene_vectors (vectors, missing) are required by, and only used with, gene_decoder="embedding"."""
        # 'auto' becomes the device used, so that run.json records it
        settings = replace(settings, device=str(resolve_device(settings.device)))
        self.settings = settings
        torch.manual_seed(settings.seed)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.device = torch.device(settings.device)
        self.X = torch.as_tensor(np.asarray(X, np.float32))
        if self.X.ndim != 2:
            raise ValueError(f"CPA: X must be cells x genes, got shape {tuple(self.X.shape)}")
        n_cells, self.n_genes = self.X.shape
        drugs = np.asarray(drugs).astype(str)
        doses = np.asarray(doses, np.float64)
        if drugs.shape != (n_cells,) or doses.shape != (n_cells,):
            raise ValueError(f"CPA: drugs {drugs.shape} and doses {doses.shape} need one entry per cell ({n_cells})")
        self.control_label = control_label
        control = drugs == control_label
        self.drug_names = sorted(set(drugs[~control]))
        if not self.drug_names:
            raise ValueError(f"CPA: no treated cells (every drug is {control_label!r})")
        doses = np.where(control, 0.0, doses)
        if not np.isfinite(doses).all() or (doses[~control] <= 0).any():
            raise ValueError("CPA: treated cells need positive, finite doses")
        self.drug_index = {d: i for i, d in enumerate(self.drug_names)}
        # Control cells take the extra class n_drugs (the drug adversary's "control").
        self.drug = torch.as_tensor([self.drug_index.get(d, len(self.drug_names)) for d in drugs])
        self.raw_dose = torch.as_tensor(doses, dtype=torch.float32)
        self.levels: dict[str, list[str]] = {}
        codes = []
        for name, labels in covariates.items():
            labels = np.asarray(labels).astype(str)
            if labels.shape != (n_cells,):
                raise ValueError(f"CPA: covariate {name!r} needs one label per cell ({n_cells})")
            levels, code = np.unique(labels, return_inverse=True)
            self.levels[name] = [str(v) for v in levels]
            codes.append(torch.as_tensor(code, dtype=torch.long))
        self.covariates = torch.stack(codes, 1) if codes else torch.zeros(n_cells, 0, dtype=torch.long)
        if settings.gene_decoder == "embedding":
            if gene_vectors is None:
                raise ValueError("CPA: gene_decoder 'embedding' needs gene_vectors=(vectors, missing)")
            if len(gene_vectors[0]) != self.n_genes:
                raise ValueError(f"CPA: {len(gene_vectors[0])} gene vectors for {self.n_genes} genes")
        else:
            gene_vectors = None
        self.dose_scale: float | None = None
        self.dose_floor: float | None = None
        self.model = CpaModel(self.n_genes, len(self.drug_names), [len(v) for v in self.levels.values()],
                              settings, gene_vectors).to(self.device)

    def _batch(self, rows: np.ndarray) -> tuple[torch.Tensor, ...]:
        return tuple(t[rows].to(self.device) for t in (self.X, self.drug, self.dose, self.covariates))

    def _adversary_loss(self, z_basal: torch.Tensor, drug: torch.Tensor, covariates: torch.Tensor,
                        penalty: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy of the adversaries and, if asked, their summed gradient penalty."""
        logits = self.model.adversary_logits(z_basal)
        targets = [drug, *covariates.T]
        loss = sum(F.cross_entropy(out, target) for out, target in zip(logits, targets))
        if not penalty:
            return loss, loss.new_zeros(())
        grads = [torch.autograd.grad(out.sum(), z_basal, create_graph=True)[0] for out in logits]
        return loss, sum(g.pow(2).mean() for g in grads)

    def _adversary_step(self, x, drug, cov, optimiser) -> dict[str, float]:
        with torch.no_grad():
            z_basal = self.model.encoder(x)
        z_basal.requires_grad_(True)  # the gradient penalty differentiates w.r.t. it
        loss, penalty = self._adversary_loss(z_basal, drug, cov, penalty=True)
        optimiser.zero_grad()
        (loss + self.settings.penalty_adversary * penalty).backward()
        optimiser.step()
        return {"adversary": loss.item(), "penalty": penalty.item()}

    def _autoencoder_step(self, x, drug, dose, cov, optimisers) -> dict[str, float]:
        z_basal = self.model.encoder(x)
        mean, variance = self.model.decode(z_basal, drug, dose, cov)
        reconstruction = F.gaussian_nll_loss(mean, x, variance)
        adversary, _ = self._adversary_loss(z_basal, drug, cov, penalty=False)
        for optimiser in optimisers:
            optimiser.zero_grad()
        (reconstruction - self.settings.reg_adversary * adversary).backward()
        for optimiser in optimisers:
            optimiser.step()
        return {"reconstruction": reconstruction.item()}

    def fit(self, train_index: np.ndarray, val_index: np.ndarray) -> list[dict]:
        """Train on the rows train_index; keep the weights of the epoch with the lowest validation
        reconstruction loss (rows val_index); return a per-epoch history (epoch, train losses, val loss,
        adversary accuracies)."""
        s, model = self.settings, self.model
        train = np.asarray(train_index, np.int64)
        val = np.asarray(val_index, np.int64)
        treated = train[self.drug[train].numpy() < len(self.drug_names)]
        if len(treated) == 0:
            raise ValueError("CPA: no treated cells among the training rows")
        self.dose_scale = float(self.raw_dose[treated].max())
        self.dose_floor = float(self.raw_dose[treated].min())
        self.dose = torch.as_tensor(self._scaled(self.raw_dose.numpy()), dtype=torch.float32)
        ae = torch.optim.Adam(model.autoencoder_parameters(), lr=s.lr, weight_decay=s.weight_decay, foreach=True)
        adv = torch.optim.Adam(model.adversary_parameters(), lr=s.adversary_lr,
                               weight_decay=s.adversary_weight_decay, foreach=True)
        doser = torch.optim.Adam(model.doser.parameters(), lr=s.doser_lr, weight_decay=s.doser_weight_decay,
                                 foreach=True)
        schedulers = [torch.optim.lr_scheduler.StepLR(o, step_size=s.step_size_lr, gamma=0.9)
                      for o in (ae, adv, doser)]
        best, best_state, stale, history, step = np.inf, None, 0, [], 0
        for epoch in range(1, s.epochs + 1):
            model.train()
            losses = defaultdict(list)
            order = train[torch.randperm(len(train), generator=self.generator).numpy()]
            for start in range(0, len(order), s.batch_size):
                rows = order[start:start + s.batch_size]
                if len(rows) < 2:  # BatchNorm needs two cells
                    continue
                x, drug, dose, cov = self._batch(rows)
                # CPA's alternation: the adversaries on most steps, the autoencoder and dosers on every
                # adversary_steps-th.
                if step % s.adversary_steps:
                    values = self._adversary_step(x, drug, cov, adv)
                else:
                    values = self._autoencoder_step(x, drug, dose, cov, (ae, doser))
                for key, value in values.items():
                    losses[key].append(value)
                step += 1
            for scheduler in schedulers:
                scheduler.step()
            record = {"epoch": epoch, **{f"train_{k}": float(np.mean(v)) for k, v in losses.items()},
                      **self._evaluate(val if len(val) else train)}
            history.append(record)
            logger.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch"))
            if record["val_reconstruction"] < best:
                best, best_state, stale = record["val_reconstruction"], copy.deepcopy(model.state_dict()), 0
            else:
                stale += 1
                if stale >= s.patience:
                    break
        if best_state is None:
            raise RuntimeError("CPA: the validation loss was never finite (training diverged)")
        model.load_state_dict(best_state)
        return history

    @torch.no_grad()
    def _evaluate(self, rows: np.ndarray) -> dict:
        """Reconstruction loss of ``rows`` and the adversaries' accuracy on them (eval mode)."""
        self.model.eval()
        total, correct, n = 0.0, np.zeros(1 + len(self.levels)), 0
        for start in range(0, len(rows), 4096):
            x, drug, dose, cov = self._batch(rows[start:start + 4096])
            z_basal = self.model.encoder(x)
            mean, variance = self.model.decode(z_basal, drug, dose, cov)
            total += float(F.gaussian_nll_loss(mean, x, variance, reduction="sum")) / self.n_genes
            targets = [drug, *cov.T]
            logits = self.model.adversary_logits(z_basal)
            correct += [float((out.argmax(1) == t).sum()) for out, t in zip(logits, targets)]
            n += len(x)
        names = ["drug", *self.levels]
        return {"val_reconstruction": total / n,
                **{f"val_adversary_{name}_accuracy": float(c) / n for name, c in zip(names, correct)}}

    def _check_fitted(self) -> None:
        if self.dose_scale is None:
            raise RuntimeError("CPA: call fit() before predicting")

    def _drug_code(self, drug: str) -> int:
        if drug == self.control_label:
            return len(self.drug_names)
        if drug not in self.drug_index:
            raise ValueError(f"CPA: unknown drug {drug!r}; known: {self.drug_names} or {self.control_label!r}")
        return self.drug_index[drug]

    def _covariate_codes(self, covariates: dict[str, str]) -> list[int]:
        if set(covariates) != set(self.levels):
            raise ValueError(f"CPA: covariates {sorted(covariates)} do not match the model's {sorted(self.levels)}")
        codes = []
        for name, levels in self.levels.items():
            label = str(covariates[name])
            if label not in levels:
                raise ValueError(f"CPA: unknown {name} {label!r}; known: {levels}")
            codes.append(levels.index(label))
        return codes

    @torch.no_grad()
    def _counterfactual(self, control_X: np.ndarray, drug: str, doses: np.ndarray,
                        covariates: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
        """Mean over the cells of the predicted means and variances, one row per raw dose."""
        self._check_fitted()
        code, cov_codes = self._drug_code(drug), self._covariate_codes(covariates)
        doses = np.asarray(doses, np.float64).reshape(-1)
        if not np.isfinite(doses).all() or (doses < 0).any():
            raise ValueError("CPA: doses must be finite and non-negative")
        x = torch.as_tensor(np.asarray(control_X, np.float32), device=self.device)
        if x.ndim != 2 or x.shape[1] != self.n_genes or len(x) == 0:
            raise ValueError(f"CPA: control_X must be cells x {self.n_genes} genes, got {tuple(x.shape)}")
        self.model.eval()
        z_basal = self.model.encoder(x)
        n = len(x)
        drug_t = torch.full((n,), code, device=self.device)
        cov = torch.as_tensor(cov_codes, device=self.device, dtype=torch.long).expand(n, -1)
        means, variances = [], []
        for dose in doses:
            scaled = 0.0 if code == len(self.drug_names) else float(self._scaled(np.array([dose]))[0])
            mean, variance = self.model.decode(z_basal, drug_t, torch.full((n,), scaled, device=self.device), cov)
            means.append(mean.mean(0).cpu().numpy())
            variances.append(variance.mean(0).cpu().numpy())
        return np.vstack(means), np.vstack(variances)

    def predict(self, control_X: np.ndarray, drug: str, dose: float,
                covariates: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
        """Counterfactual: encode the given control cells, swap in drug/dose/covariates, decode.
        Returns (mean over cells of the predicted means, mean over cells of the predicted variances), each
        (n_genes,), as CPA's R² evaluation does. drug may be the control label (then only covariates apply)."""
        means, variances = self._counterfactual(control_X, drug, np.array([dose]), covariates)
        return means[0], variances[0]

    def dose_response(self, control_X: np.ndarray, drug: str, doses: np.ndarray,
                      covariates: dict[str, str]) -> np.ndarray:
        """Predicted mean expression (len(doses) x n_genes) along a dose grid (raw dose units)."""
        return self._counterfactual(control_X, drug, doses, covariates)[0]

    @torch.no_grad()
    def dose_curve(self, drug: str, doses: np.ndarray) -> np.ndarray:
        """The learned scalar dose-response f_drug(dose) at raw doses (for plots)."""
        self._check_fitted()
        if drug not in self.drug_index:
            raise ValueError(f"CPA: unknown drug {drug!r}; known: {self.drug_names}")
        scaled = torch.as_tensor(self._scaled(np.asarray(doses, np.float32).reshape(-1)), device=self.device)
        index = torch.full(scaled.shape, self.drug_index[drug], device=self.device)
        self.model.eval()
        return self.model.doser(index, scaled).cpu().numpy()

    def _scaled(self, doses: np.ndarray) -> np.ndarray:
        """Doses as the doser sees them: 0 stays 0; ``max``: dose / largest training dose (CPA);
        ``log``: log10 dose mapped linearly onto (0, 1] over the training range, the lowest dose at
        one decade's share above 0 (log-dose inputs as chemCPA uses), so a sigmoid doser is a Hill curve."""
        doses = np.asarray(doses, np.float32)
        if self.settings.dose_transform == "max":
            return (doses / self.dose_scale).astype(np.float32)
        top, floor = np.log10(self.dose_scale), np.log10(self.dose_floor)
        span = top - floor + 1.0
        scaled = (np.log10(np.maximum(doses, 1e-12)) - floor + 1.0) / span
        return np.where(doses > 0, np.clip(scaled, 1e-6, None), 0.0).astype(np.float32)

    def settings_dict(self) -> dict:
        """Settings plus the dose scale, for run.json."""
        return {**asdict(self.settings), "dose_scale": self.dose_scale, "dose_floor": self.dose_floor}
