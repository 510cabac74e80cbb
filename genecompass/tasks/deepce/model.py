"""DeepCE (Pham et al., Nature Machine Intelligence 2021), re-implemented in torch.

DeepCE predicts the change in expression of a fixed gene panel (the 978 L1000
landmark genes) caused by a compound at a dose in a cell line:

- the drug is a molecular graph; a neural-fingerprint graph convolution
  (Duvenaud et al. 2015: each layer sums an atom's own and its neighbours'
  features plus the bond types around it, then applies a degree-specific linear
  map and a ReLU) gives one vector per atom, the sum of a linear readout of
  every layer (radius 0 .. ``fingerprint_layers``);
- each gene has a fixed feature vector, projected linearly; genes flagged
  missing get a learned row instead;
- transformer-style drug–gene attention blocks (multi-head attention with the
  genes as queries and the drug's atoms as keys and values, padding atoms
  masked; residual + layer norm; position-wise feed-forward; residual + layer
  norm);
- learned cell-line and dose embeddings are concatenated to every gene's
  attended vector; Linear + ReLU + dropout + Linear give one value per gene;
- point-wise MSE loss, Adam (lr 2e-4), batch size 32, 120 epochs; the weights of
  the epoch with the best mean per-profile Pearson on the validation rows are
  kept.

The attention of a batch is computed once per distinct drug in it (the genes'
queries do not depend on the cell line or dose) and shared by that drug's rows.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from genecompass.devices import resolve_device
from genecompass.drug.molecules import ATOM_FEATURES, BOND_TYPES, MAX_DEGREE, atom_graph
from genecompass.tasks.deepce.metrics import row_pearson
from genecompass.utils import settings_from_config

logger = logging.getLogger(__name__)


@dataclass
class DeepceSettings:
    drug_dim: int = 128           # per-atom drug vectors (DeepCE drug_emb_dim)
    fingerprint_dim: int = 16     # width of each graph-convolution layer (DeepCE conv_size [16, 16])
    fingerprint_layers: int = 2
    gene_dim: int = 128           # projected gene vectors, the attention's model width
    hidden_dim: int = 128         # feed-forward width (attention blocks and output layers)
    attention_heads: int = 4
    attention_layers: int = 2
    cell_dim: int = 50
    dose_dim: int = 4
    dropout: float = 0.1
    # Dropout of the attention weights; None: ``dropout`` (DeepCE's one rate). On CPU any attention
    # dropout sends PyTorch's attention down its slow path (~4x the time of the fused kernel).
    attention_dropout: float | None = None
    lr: float = 2e-4
    batch_size: int = 32
    epochs: int = 120
    device: str = "cpu"
    seed: int = 0

    @classmethod
    def from_config(cls, config: dict | None, seed: int) -> DeepceSettings:
        settings = settings_from_config(cls, config, "tasks.deepce.model", seed=seed)
        if settings.gene_dim % settings.attention_heads:
            raise ValueError("tasks.deepce.model: gene_dim must be a multiple of attention_heads")
        return settings


class DegreeLinear(nn.Module):
    """A linear map with its own weights for each atom degree 0..``MAX_DEGREE``."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        bound = in_dim ** -0.5
        self.weight = nn.Parameter(torch.empty(MAX_DEGREE + 1, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(MAX_DEGREE + 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, degree: torch.Tensor) -> torch.Tensor:
        return (x.unsqueeze(1) @ self.weight[degree]).squeeze(1) + self.bias[degree]


class NeuralFingerprint(nn.Module):
    """Duvenaud-style graph convolution over a batch of molecules; one ``out_dim`` vector per atom."""

    def __init__(self, width: int, layers: int, out_dim: int):
        super().__init__()
        sizes = [ATOM_FEATURES] + [width] * layers
        self.convolutions = nn.ModuleList(DegreeLinear(a + len(BOND_TYPES), b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.readouts = nn.ModuleList(nn.Linear(size, out_dim) for size in sizes)

    def forward(self, atoms: torch.Tensor, bonds: torch.Tensor, degree: torch.Tensor) -> torch.Tensor:
        source, target, kind = bonds
        bond_sum = atoms.new_zeros(len(atoms), len(BOND_TYPES)).index_add_(
            0, target, F.one_hot(kind, len(BOND_TYPES)).to(atoms.dtype))
        h = atoms
        out = self.readouts[0](h)
        for convolution, readout in zip(self.convolutions, self.readouts[1:]):
            summed = h.index_add(0, target, h[source])  # own + neighbours' features
            h = torch.relu(convolution(torch.cat([summed, bond_sum], 1), degree))
            out = out + readout(h)
        return out


class GeneEncoder(nn.Module):
    """Fixed gene vectors (scaled to unit standard deviation) projected linearly; missing genes get a learned row."""

    def __init__(self, vectors: np.ndarray, missing: np.ndarray, dim: int):
        super().__init__()
        vectors = np.nan_to_num(np.asarray(vectors, np.float32))
        vectors[missing] = 0.0
        scale = vectors[~missing].std() if (~missing).any() else 1.0
        self.register_buffer("vectors", torch.from_numpy(vectors / max(float(scale), 1e-6)))
        self.register_buffer("missing", torch.from_numpy(np.asarray(missing, bool)))
        self.projection = nn.Linear(vectors.shape[1], dim)
        self.fallback = nn.Parameter(torch.randn(len(vectors), dim) * 0.1)

    def forward(self) -> torch.Tensor:
        return torch.where(self.missing[:, None], self.fallback, self.projection(self.vectors))


class DrugGeneBlock(nn.Module):
    """Genes attend over a drug's atoms: attention, residual + norm, feed-forward, residual + norm."""

    def __init__(self, gene_dim: int, drug_dim: int, heads: int, hidden: int, dropout: float,
                 attention_dropout: float):
        super().__init__()
        self.attention = nn.MultiheadAttention(gene_dim, heads, dropout=attention_dropout, kdim=drug_dim, vdim=drug_dim,
                                               batch_first=True)
        self.feed_forward = nn.Sequential(nn.Linear(gene_dim, hidden), nn.ReLU(), nn.Linear(hidden, gene_dim))
        self.norm_attention = nn.LayerNorm(gene_dim)
        self.norm_feed_forward = nn.LayerNorm(gene_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, genes: torch.Tensor, atoms: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(genes, atoms, atoms, key_padding_mask=padding, need_weights=False)
        genes = self.norm_attention(genes + self.dropout(attended))
        return self.norm_feed_forward(genes + self.dropout(self.feed_forward(genes)))


@dataclass
class GraphBatch:
    """Several molecules as one graph: atoms, bonds (source, target, type), degrees, and each atom's
    molecule and position within it."""
    atoms: torch.Tensor
    bonds: torch.Tensor
    degree: torch.Tensor
    molecule: torch.Tensor
    position: torch.Tensor
    n_molecules: int
    max_atoms: int

    @classmethod
    def collate(cls, graphs: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> GraphBatch:
        sizes = [len(atoms) for atoms, _ in graphs]
        offsets = np.cumsum([0] + sizes[:-1])
        bonds = torch.cat([b + torch.tensor([[o], [o], [0]]) for (_, b), o in zip(graphs, offsets)], 1)
        n = sum(sizes)
        degree = torch.bincount(bonds[0], minlength=n).clamp(max=MAX_DEGREE)
        molecule = torch.repeat_interleave(torch.arange(len(graphs)), torch.tensor(sizes))
        position = torch.cat([torch.arange(size) for size in sizes])
        return cls(torch.cat([a for a, _ in graphs]).to(device), bonds.to(device), degree.to(device),
                   molecule.to(device), position.to(device), len(graphs), max(sizes))


class DeepceModel(nn.Module):
    """Neural fingerprint -> drug-gene attention -> cell line and dose -> one value per gene."""

    def __init__(self, gene_vectors: np.ndarray, gene_missing: np.ndarray, n_cells: int, n_doses: int,
                 settings: DeepceSettings):
        super().__init__()
        s = settings
        self.fingerprint = NeuralFingerprint(s.fingerprint_dim, s.fingerprint_layers, s.drug_dim)
        self.genes = GeneEncoder(gene_vectors, gene_missing, s.gene_dim)
        attention_dropout = s.dropout if s.attention_dropout is None else s.attention_dropout
        self.blocks = nn.ModuleList(DrugGeneBlock(s.gene_dim, s.drug_dim, s.attention_heads, s.hidden_dim, s.dropout,
                                                  attention_dropout) for _ in range(s.attention_layers))
        self.cell = nn.Embedding(n_cells, s.cell_dim)
        self.dose = nn.Embedding(n_doses, s.dose_dim)
        self.head = nn.Sequential(nn.Linear(s.gene_dim + s.cell_dim + s.dose_dim, s.hidden_dim), nn.ReLU(),
                                  nn.Dropout(s.dropout), nn.Linear(s.hidden_dim, 1))

    def forward(self, graphs: GraphBatch, drug: torch.Tensor, cell: torch.Tensor, dose: torch.Tensor) -> torch.Tensor:
        """Predicted change (rows x genes); ``drug`` indexes the molecules of ``graphs``."""
        atoms = self.fingerprint(graphs.atoms, graphs.bonds, graphs.degree)
        padded = atoms.new_zeros(graphs.n_molecules, graphs.max_atoms, atoms.shape[1])
        padded[graphs.molecule, graphs.position] = atoms
        padding = torch.ones(graphs.n_molecules, graphs.max_atoms, dtype=torch.bool, device=atoms.device)
        padding[graphs.molecule, graphs.position] = False
        genes = self.genes().unsqueeze(0).expand(graphs.n_molecules, -1, -1)
        for block in self.blocks:
            genes = block(genes, padded, padding)
        genes = genes[drug]
        n_genes = genes.shape[1]
        context = torch.cat([self.cell(cell), self.dose(dose)], 1).unsqueeze(1).expand(-1, n_genes, -1)
        return self.head(torch.cat([genes, context], 2)).squeeze(-1)


class DeepCE:
    """Training and prediction around :class:`DeepceModel`; rows are (drug, cell, dose) labels."""

    def __init__(self, smiles: dict[str, str], gene_vectors: np.ndarray, cell_lines: list[str], doses: list[str],
                 settings: DeepceSettings, gene_missing: np.ndarray | None = None):
        # 'auto' becomes the device used, so that run.json records it
        settings = replace(settings, device=str(resolve_device(settings.device)))
        self.settings = settings
        torch.manual_seed(settings.seed)
        self.device = torch.device(settings.device)
        gene_vectors = np.asarray(gene_vectors, np.float32)
        if gene_vectors.ndim != 2:
            raise ValueError(f"DeepCE: gene_vectors must be genes x features, got shape {gene_vectors.shape}")
        self.n_genes = len(gene_vectors)
        missing = (np.zeros(self.n_genes, bool) if gene_missing is None else np.asarray(gene_missing, bool))
        if missing.shape != (self.n_genes,):
            raise ValueError(f"DeepCE: gene_missing has shape {missing.shape}; expected ({self.n_genes},)")
        # Each drug is featurised once; an invalid SMILES fails here, naming the drug.
        self.graphs = {str(drug): tuple(torch.from_numpy(a) for a in atom_graph(s, str(drug)))
                       for drug, s in smiles.items()}
        self.index = {"drug": {d: i for i, d in enumerate(self.graphs)},
                      "cell": {str(c): i for i, c in enumerate(cell_lines)},
                      "dose": {str(d): i for i, d in enumerate(doses)}}
        self.model = DeepceModel(gene_vectors, missing, len(self.index["cell"]), len(self.index["dose"]),
                                 settings).to(self.device)

    def _encode(self, table: pd.DataFrame) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """The rows' drugs and their cell-line and dose indices; a ValueError naming an unknown label."""
        columns = {}
        for column, index in self.index.items():
            if column not in table.columns:
                raise ValueError(f"DeepCE: the table has no {column!r} column")
            labels = table[column].astype(str).tolist()
            unknown = sorted(set(labels) - set(index))
            if unknown:
                raise ValueError(f"DeepCE: unknown {column} label(s) {unknown[:10]}")
            columns[column] = labels if column == "drug" else torch.tensor([index[x] for x in labels])
        return columns["drug"], columns["cell"], columns["dose"]

    def _forward(self, drugs: list[str], cell: torch.Tensor, dose: torch.Tensor) -> torch.Tensor:
        distinct = list(dict.fromkeys(drugs))
        position = {d: i for i, d in enumerate(distinct)}
        graphs = GraphBatch.collate([self.graphs[d] for d in distinct], self.device)
        drug = torch.tensor([position[d] for d in drugs], device=self.device)
        return self.model(graphs, drug, cell.to(self.device), dose.to(self.device))

    def _targets(self, y: np.ndarray, rows: int) -> torch.Tensor:
        y = np.asarray(y, np.float32)
        if y.shape != (rows, self.n_genes):
            raise ValueError(f"DeepCE: targets have shape {y.shape}; expected ({rows}, {self.n_genes})")
        return torch.from_numpy(y)

    def fit(self, train: pd.DataFrame, train_y: np.ndarray, val: pd.DataFrame, val_y: np.ndarray) -> list[dict]:
        """train/val: columns drug, cell, dose (strings); y: rows x genes. Returns per-epoch history
        (epoch, train_loss, val_pearson); the weights of the best validation epoch are kept."""
        s = self.settings
        drugs, cells, doses = self._encode(train)
        y = self._targets(train_y, len(train))
        val_truth = self._targets(val_y, len(val)).numpy()
        torch.manual_seed(s.seed)  # dropout draws from the global generator
        generator = torch.Generator().manual_seed(s.seed)
        optimiser = torch.optim.Adam(self.model.parameters(), lr=s.lr)
        best, best_state, history = -np.inf, None, []
        for epoch in range(s.epochs):
            self.model.train()
            total = 0.0
            order = torch.randperm(len(train), generator=generator)
            for start in range(0, len(order), s.batch_size):
                rows = order[start:start + s.batch_size]
                optimiser.zero_grad()
                predicted = self._forward([drugs[i] for i in rows], cells[rows], doses[rows])
                loss = F.mse_loss(predicted, y[rows].to(self.device))
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(rows)
            val_pearson = float(row_pearson(self.predict(val), val_truth).mean()) if len(val) else float("nan")
            history.append({"epoch": epoch + 1, "train_loss": total / max(len(train), 1), "val_pearson": val_pearson})
            logger.info("epoch %d: train loss %.4f, validation Pearson %.4f", epoch + 1, history[-1]["train_loss"],
                        val_pearson)
            if val_pearson > best:
                best, best_state = val_pearson, copy.deepcopy(self.model.state_dict())
        if best_state is not None:
            self.model.load_state_dict(best_state)
        return history

    @torch.no_grad()
    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """Predicted change per row of ``table`` (rows x genes)."""
        self.model.eval()
        drugs, cells, doses = self._encode(table)
        size = self.settings.batch_size
        chunks = [self._forward(drugs[i:i + size], cells[i:i + size], doses[i:i + size]).cpu().numpy()
                  for i in range(0, len(drugs), size)]
        return np.vstack(chunks) if chunks else np.zeros((0, self.n_genes), np.float32)

    def settings_dict(self) -> dict:
        return asdict(self.settings)
