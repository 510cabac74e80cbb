"""GEARS (Roohani et al. 2024), re-implemented in torch + torch_geometric.

The published package (``cell-gears`` 0.1.2, the latest) does not run on our
stack: ``GEARS.__init__`` indexes a scipy sparse matrix with a pandas Series
(an error with current scipy), and with a dense matrix its co-expression graph
and ``deeper_analysis`` call ``.toarray()``; it also downloads its gene2go
pickle when constructed and writes ``./data`` files relative to the working
directory. The architecture, loss, optimiser and split follow the package
(v0.1.2) and the paper:

- gene embedding (``nn.Embedding``, max-norm 1) -> BatchNorm -> ReLU, plus 0.2 x
  a positional embedding smoothed by SGConv over the co-expression graph, then
  an MLP;
- perturbation embeddings smoothed by SGConv over the GO Jaccard graph; the
  embeddings of a cell's perturbed genes are summed, passed through an MLP
  and added to every gene of that cell;
- BatchNorm, ReLU, a shared MLP, gene-specific linear decoders, a cross-gene
  MLP over the whole predicted profile and a second gene-specific layer; the
  output is added to the control cell's expression;
- loss: autofocus MSE (power 2 + 2) on the genes expressed in the condition
  plus a direction term (lambda 0.1); Adam (lr 1e-3, weight decay 5e-4),
  learning rate halved each epoch, model of the best validation top-20 DE MSE.

Every cell of the batch shares the unperturbed gene embeddings, so they are
computed once per batch instead of once per cell graph; the result is the same.

GeneCompass integration (paper, "In silico perturbation"): the gene embedding
table is replaced by a learned linear projection of fixed GeneCompass gene
embeddings (genes without a GeneCompass vector keep a learned row); everything
else is unchanged.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch_geometric.nn import SGConv

from genecompass.devices import resolve_device
from genecompass.tasks.perturbation.data import condition_genes
from genecompass.utils import settings_from_config

logger = logging.getLogger(__name__)


@dataclass
class GearsSettings:
    hidden_size: int = 64
    num_go_gnn_layers: int = 1
    num_gene_gnn_layers: int = 1
    go_neighbours: int = 20
    go_threshold: float = 0.1
    coexpress_neighbours: int = 20
    coexpress_threshold: float = 0.4
    direction_lambda: float = 0.1
    loss: str = "gears"          # gears: autofocus + direction; top_de_mse: the paper's GeneCompass fine-tuning loss
    epochs: int = 10             # GeneCompass paper: 10; GEARS default: 20
    lr: float = 1e-3
    weight_decay: float = 5e-4
    batch_size: int = 32
    control_samples: int = 300   # control cells averaged for a condition's prediction
    device: str = "cpu"
    seed: int = 0

    @classmethod
    def from_config(cls, config: dict | None, seed: int) -> GearsSettings:
        settings = settings_from_config(cls, config, "tasks.perturbation.gears", seed=seed)
        if settings.loss not in ("gears", "top_de_mse"):
            raise ValueError("tasks.perturbation.gears.loss: use 'gears' or 'top_de_mse'")
        return settings


def mlp(sizes: list[int]) -> nn.Sequential:
    """GEARS's MLP: Linear + BatchNorm + ReLU per layer, without the last ReLU."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class ProjectedEmbedding(nn.Module):
    """Stands in for ``nn.Embedding``: a learned projection of fixed gene vectors.

    Genes without a vector (``missing``) get a learned row of their own. Rows are
    renormalised to norm <= 1 as GEARS's ``max_norm=True`` embedding does.
    """

    def __init__(self, vectors: np.ndarray, missing: np.ndarray, hidden: int):
        super().__init__()
        vectors = np.asarray(vectors, np.float32)
        scale = vectors[~missing].std() if (~missing).any() else 1.0
        self.register_buffer("vectors", torch.from_numpy(vectors / max(float(scale), 1e-6)))
        self.register_buffer("missing", torch.from_numpy(np.asarray(missing, bool)))
        self.projection = nn.Linear(vectors.shape[1], hidden)
        self.fallback = nn.Parameter(torch.randn(len(vectors), hidden) * 0.1)

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        out = torch.where(self.missing[index, None], self.fallback[index], self.projection(self.vectors[index]))
        norm = out.norm(dim=-1, keepdim=True).clamp_min(1.0)
        return out / norm


class GearsModel(nn.Module):
    def __init__(self, n_genes: int, n_perts: int, coexpress: tuple, go: tuple, settings: GearsSettings,
                 gene_vectors: tuple[np.ndarray, np.ndarray] | None = None):
        super().__init__()
        h = settings.hidden_size
        self.n_genes, self.n_perts = n_genes, n_perts
        self.gene_emb = (ProjectedEmbedding(*gene_vectors, h) if gene_vectors is not None
                         else nn.Embedding(n_genes, h, max_norm=True))
        self.emb_pos = nn.Embedding(n_genes, h, max_norm=True)
        self.pert_emb = nn.Embedding(n_perts, h, max_norm=True)
        self.bn_emb = nn.BatchNorm1d(h)
        self.emb_trans_v2 = mlp([h, h, h])
        self.pert_fuse = mlp([h, h, h])
        self.layers_emb_pos = nn.ModuleList(SGConv(h, h, 1) for _ in range(settings.num_gene_gnn_layers))
        self.sim_layers = nn.ModuleList(SGConv(h, h, 1) for _ in range(settings.num_go_gnn_layers))
        for name, (index, weight) in {"coexpress": coexpress, "go": go}.items():
            self.register_buffer(f"{name}_index", torch.as_tensor(index, dtype=torch.long))
            self.register_buffer(f"{name}_weight", torch.as_tensor(weight, dtype=torch.float32))
        self.recovery_w = mlp([h, 2 * h, h])
        self.indv_w1 = nn.Parameter(torch.empty(n_genes, h, 1))
        self.indv_b1 = nn.Parameter(torch.empty(n_genes, 1))
        self.cross_gene_state = mlp([n_genes, h, h])
        self.indv_w2 = nn.Parameter(torch.empty(1, n_genes, h + 1))
        self.indv_b2 = nn.Parameter(torch.empty(1, n_genes))
        for weight in (self.indv_w1, self.indv_b1, self.indv_w2, self.indv_b2):
            nn.init.xavier_normal_(weight)
        self.bn_pert_base = nn.BatchNorm1d(h)

    def forward(self, x: torch.Tensor, perts: list[list[int]]) -> torch.Tensor:
        """``x``: control expression (batch, genes); ``perts``: perturbation indices per cell."""
        batch = x.shape[0]
        genes = torch.arange(self.n_genes, device=x.device)
        base = torch.relu(self.bn_emb(self.gene_emb(genes)))
        pos = self.emb_pos(genes)
        for i, layer in enumerate(self.layers_emb_pos):
            pos = layer(pos, self.coexpress_index, self.coexpress_weight)
            if i < len(self.layers_emb_pos) - 1:
                pos = pos.relu()
        base = self.emb_trans_v2(base + 0.2 * pos)
        base = base.unsqueeze(0).expand(batch, -1, -1).clone()

        pert_global = self.pert_emb(torch.arange(self.n_perts, device=x.device))
        for i, layer in enumerate(self.sim_layers):
            pert_global = layer(pert_global, self.go_index, self.go_weight)
            if i < len(self.sim_layers) - 1:
                pert_global = pert_global.relu()
        cells = [i for i, p in enumerate(perts) if p]
        if cells:
            summed = torch.stack([pert_global[perts[i]].sum(0) for i in cells])
            # BatchNorm needs two rows; GEARS duplicates a lone perturbation the same way.
            fused = self.pert_fuse(summed if len(cells) > 1 else summed.repeat(2, 1))[: len(cells)]
            base[cells] = base[cells] + fused.unsqueeze(1)

        h = base.shape[-1]
        out = self.recovery_w(torch.relu(self.bn_pert_base(base.reshape(-1, h))))
        out = (out.reshape(batch, self.n_genes, h, 1) * self.indv_w1).sum(2) + self.indv_b1
        cross = self.cross_gene_state(out.squeeze(-1))
        cross = cross.unsqueeze(1).expand(-1, self.n_genes, -1)
        out = (torch.cat([out, cross], 2) * self.indv_w2).sum(2) + self.indv_b2
        return out + x


def gears_loss(pred, y, conditions, ctrl, retain: dict[str, torch.Tensor], direction_lambda: float):
    """GEARS's loss, averaged over the conditions of the batch."""
    total = pred.new_zeros(())
    unique = list(dict.fromkeys(conditions))
    for condition in unique:
        rows = [i for i, c in enumerate(conditions) if c == condition]
        genes = retain.get(condition)
        p, t, c = pred[rows], y[rows], ctrl
        if genes is not None:
            p, t, c = p[:, genes], t[:, genes], ctrl[genes]
        total = total + ((p - t) ** 4).mean()
        total = total + direction_lambda * ((torch.sign(t - c) - torch.sign(p - c)) ** 2).mean()
    return total / len(unique)


def top_de_loss(pred, y, conditions, de_index: dict[str, torch.Tensor]):
    """MSE on each condition's top-20 DE genes (the GeneCompass paper's fine-tuning loss)."""
    total, n = pred.new_zeros(()), 0
    for condition in dict.fromkeys(conditions):
        if condition not in de_index:
            continue
        rows = [i for i, c in enumerate(conditions) if c == condition]
        total = total + ((pred[rows][:, de_index[condition]] - y[rows][:, de_index[condition]]) ** 2).mean()
        n += 1
    return total / max(n, 1)


@dataclass
class GearsResult:
    predictions: pd.DataFrame     # condition x gene mean predicted expression
    history: list[dict]
    settings: dict


class Gears:
    """Training and prediction around :class:`GearsModel` on one dataset and split."""

    def __init__(self, X: np.ndarray, conditions: np.ndarray, genes: list[str], pert_genes: list[str],
                 go: tuple, coexpress: tuple, de_genes: dict[str, list[str]], settings: GearsSettings,
                 gene_vectors: tuple[np.ndarray, np.ndarray] | None = None):
        # 'auto' becomes the device used, so that run.json records it
        settings = replace(settings, device=str(resolve_device(settings.device)))
        self.settings = settings
        torch.manual_seed(settings.seed)
        self.rng = np.random.default_rng(settings.seed)
        self.device = torch.device(settings.device)
        self.X = torch.as_tensor(X, dtype=torch.float32)
        self.conditions = np.asarray(conditions).astype(str)
        self.genes = list(genes)
        self.pert_index = {g: i for i, g in enumerate(pert_genes)}
        self.ctrl_rows = np.flatnonzero(self.conditions == "ctrl")
        self.ctrl_mean = self.X[self.ctrl_rows].mean(0).to(self.device)
        gene_position = {g: i for i, g in enumerate(self.genes)}
        self.de_index = {c: torch.as_tensor([gene_position[g] for g in genes_], device=self.device)
                         for c, genes_ in de_genes.items()}
        # Genes expressed in a condition (GEARS's non-zero filter of the loss).
        self.retain = {}
        for condition in np.unique(self.conditions):
            if condition != "ctrl":
                rows = self.conditions == condition
                self.retain[condition] = torch.as_tensor(
                    np.flatnonzero(np.asarray((self.X[rows] != 0).any(0))), device=self.device)
        self.model = GearsModel(len(genes), len(pert_genes), coexpress, go, settings, gene_vectors).to(self.device)

    def perts_of(self, condition: str) -> list[int]:
        return [self.pert_index[g] for g in condition_genes(condition)]

    def _batches(self, rows: np.ndarray):
        order = self.rng.permutation(rows)
        size = self.settings.batch_size
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            if len(chunk) < 2:  # BatchNorm needs two cells
                continue
            controls = self.rng.choice(self.ctrl_rows, len(chunk))
            # Control cells are their own input; a perturbed cell gets a random control cell.
            inputs = np.where(self.conditions[chunk] == "ctrl", chunk, controls)
            yield chunk, inputs

    def _step_loss(self, chunk, inputs):
        conditions = list(self.conditions[chunk])
        x = self.X[inputs].to(self.device)
        y = self.X[chunk].to(self.device)
        pred = self.model(x, [self.perts_of(c) for c in conditions])
        if self.settings.loss == "top_de_mse":
            return top_de_loss(pred, y, conditions, self.de_index)
        return gears_loss(pred, y, conditions, self.ctrl_mean, self.retain, self.settings.direction_lambda)

    def fit(self, train: list[str], val: list[str]) -> list[dict]:
        s = self.settings
        optimiser = torch.optim.Adam(self.model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=1, gamma=0.5)
        train_rows = np.flatnonzero(np.isin(self.conditions, list(train)))
        best, best_state, history = np.inf, None, []
        for epoch in range(s.epochs):
            self.model.train()
            losses = []
            for chunk, inputs in self._batches(train_rows):
                optimiser.zero_grad()
                loss = self._step_loss(chunk, inputs)
                loss.backward()
                torch.nn.utils.clip_grad_value_(self.model.parameters(), clip_value=1.0)   # as GEARS does
                optimiser.step()
                losses.append(float(loss.detach()))
            scheduler.step()
            val_de_mse = self.de_mse(val) if val else float(np.mean(losses))
            history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_top20_de_mse": val_de_mse})
            logger.info("epoch %d: train loss %.4f, validation top-20 DE MSE %.4f", epoch + 1,
                        history[-1]["train_loss"],
                        val_de_mse)
            if val_de_mse < best:
                best, best_state = val_de_mse, copy.deepcopy(self.model.state_dict())
        if best_state is not None:
            self.model.load_state_dict(best_state)
        return history

    def de_mse(self, conditions: list[str]) -> float:
        predicted = self.predict(conditions)
        errors = []
        for condition in conditions:
            rows = self.conditions == condition
            truth = self.X[rows].mean(0)
            index = self.de_index[condition].cpu().numpy()
            errors.append(float(((predicted.loc[condition].to_numpy()[index] - truth.numpy()[index]) ** 2).mean()))
        return float(np.mean(errors))

    @torch.no_grad()
    def predict(self, conditions: list[str]) -> pd.DataFrame:
        """Mean predicted profile per condition over ``control_samples`` control cells (GEARS's predict)."""
        self.model.eval()
        rng = np.random.default_rng(self.settings.seed + 1)
        n = min(self.settings.control_samples, len(self.ctrl_rows))
        controls = rng.choice(self.ctrl_rows, n, replace=False)
        x = self.X[controls].to(self.device)
        rows = []
        for condition in conditions:
            pred = self.model(x, [self.perts_of(condition)] * n)
            rows.append(pred.mean(0).cpu().numpy())
        return pd.DataFrame(np.vstack(rows), index=list(conditions), columns=self.genes)

    def settings_dict(self) -> dict:
        return asdict(self.settings)
