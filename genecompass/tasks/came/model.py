"""Cross-species cell-type annotation with CAME on ``torch_geometric`` (CAME and GeneCompass+CAME).

CAME (Liu et al. 2023, Genome Research; PyPI ``came``) labels the cells of a
query species from the labelled cells of a reference species with a
heterogeneous graph network trained on one graph holding the cells and the
genes of both species. The original needs DGL; this is a re-implementation on
``torch_geometric``. GeneCompass (paper, "Cross-species cell type annotation")
feeds its pre-trained gene embeddings in as the initial gene features
("GeneCompass+CAME"); everything else is CAME.

Steps (each a function; a script chains them)::

    clusters = cluster_query(query)                       # once, before any training
    genes = select_genes(reference, query, homology, labels, clusters)  # CAME's HVG + DEG choice
    graph = build_came_graph(reference, query, homology, labels,
                             node_genes=genes.node_genes, feature_pairs=genes.feature_pairs,
                             gene_embeddings=None)        # or a GeneCompass gene table
    runs = run_came_seeds(graph, seeds=range(20), query_clusters=clusters,
                          query_labels=truth)             # truth only for the report

Graph (``HeteroData``, node types ``cell`` and ``gene``; the genes of the two
species are distinct nodes, reference genes first, reference cells first):

- ``(cell, express, gene)``: a cell → each of its species' node genes it
  expresses (value > 0); ``edge_weight`` holds the expression value.
- ``(gene, expressed_by, cell)``: the reverse edges, same weights.
- ``(cell, similar_to, cell)``: kNN within each species (cosine on the PCA of
  the z-scored node genes; ``n_neighbors`` counts the cell itself, as scanpy
  does), symmetrised; optionally also mutual nearest neighbours across
  species on the shared cell features (``cross_species_neighbors``; CAME's
  default has none).
- ``(gene, homolog_with, gene)``: both directions of each homology-table pair
  whose two genes are nodes (one-to-one and many-to-many alike).
- ``(cell, self_loop_cell, cell)`` and ``(gene, self_loop_gene, gene)``.

Cell features ``x`` (the paper's ``x_{c_i}``): log-normalised expression of
the one-to-one homologous feature-gene pairs, so both species share one
feature space, z-scored within each dataset (ddof = 1, as CAME).

Model (CAME's ``CGGCNet`` with CAME's default parameters; every relation
weight is shared by the two species):

1. Embedding layer over ``self_loop_cell`` and ``express``:
   ``h_c = σ(LN(W_c x_c) + b_c)``, ``h_g = σ(LN(mean_{c expressing g} W_cg x_c) + b_g)``
   with σ the leaky ReLU of slope 0.05, LN a LayerNorm and dropout 0.2. CAME's
   genes have no input of their own: a gene starts as the average of the
   transformed features of the cells expressing it. Given gene embeddings
   ``e_g`` (GeneCompass+CAME), a gene self-loop joins that sum,
   ``h_g = σ(LN(W_g e_g + mean W_cg x_c) + b_g)``: the paper's equation with a
   learned projection ``W_g``, since the embedding size (768) differs from the
   hidden size. ``e_g`` stays fixed.
2. ``n_hidden_layers`` relational layers over all relations: per relation a
   weight matrix and the mean over the node's in-neighbours, summed over
   relations, then LayerNorm, bias, leaky ReLU 0.05, dropout 0.2. CAME applies
   one shared layer at every hidden step. Gene self-loops travel with
   ``homolog_with`` (CAME adds the identity to its homology adjacency) unless
   ``separate_gene_self_loop`` gives them their own weight.
3. Classifier: graph attention from genes to cells over ``expressed_by``,
   8 heads of one output per class, averaged; came 0.1.13's additive score
   (``attention="add"``; ``"mul"``, its older multiplicative score, is kept as an option),
   softmax over the cell's genes, attention dropout 0.6, input dropout 0.01; then LayerNorm and bias.

Training (full graph), with came 0.1.13's settings (checked against the package by
``bench/fidelity_came.py``): Adam (lr 5e-4, weight decay 1e-2); one dropout-noisy forward pass per
epoch (``forward_passes``; its older ``train_v0`` summed two); the loss is the label-smoothed
cross-entropy (ε = 0.1) plus a multi-label binary cross-entropy (β = 1), both weighted by the class
weights ``1/sqrt(n_k + 1)`` (normalised to sum 1), on the reference cells only.

Checkpoint selection without query labels (as CAME): the query cells are
clustered once, before training (CAME: Leiden, resolution 0.4, on a 20-NN
graph of the PCA of the query's 2000 HVGs). Each epoch, the adjusted mutual information (AMI)
between that epoch's query predictions and the clusters is computed; from
epoch ``select_from_epoch`` on, the weights (as they were before that epoch's
update) are kept whenever the AMI reaches the running maximum within
``ami_tolerance`` (0: the exact best, as CAME). Query labels, when given, only
produce the reported metrics and never reach the selection.

Where this differs from the ``came`` package: neighbours are exact
scikit-learn ones, and the graphs use only the edge pattern (CAME takes the
non-zero pattern of scanpy's connectivities, also unweighted); the
clustering graph for Leiden is unweighted (scanpy weights it by UMAP
connectivities); the cell-cell graph is built on the PCA of all node genes (CAME: its HVGs); cells
are scaled to 1e4 counts (CAME: to the median library size); DEGs must be detected in 10% of their
group (CAME's cross-species pipeline has no such filter); predictions and hidden states come from one
forward pass with dropout active in the hidden layers and not in the classifier, as CAME predicts;
no mini-batch training and no attention-matrix export.

Implementation: the per-relation averages are a ``MessagePassing`` whose
aggregation is one sparse product with a row-normalised adjacency built once
per graph; the attention softmax is ``torch_geometric.utils.softmax`` and its
weighted sum one sparse product per head. Memory thus grows with the number
of edges (times heads), as in CAME's DGL kernels.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import sparse
from sklearn.metrics import adjusted_mutual_info_score
from torch import nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import degree, softmax
from tqdm.auto import tqdm

from genecompass.devices import resolve_device
from genecompass.errors import InputError
from genecompass.tasks.annotation.metrics import annotation_metrics, seed_statistics

log = logging.getLogger(__name__)

CELL, GENE = "cell", "gene"
EXPRESS = (CELL, "express", GENE)
EXPRESSED_BY = (GENE, "expressed_by", CELL)
SIMILAR_TO = (CELL, "similar_to", CELL)
HOMOLOG_WITH = (GENE, "homolog_with", GENE)
CELL_SELF_LOOP = (CELL, "self_loop_cell", CELL)
GENE_SELF_LOOP = (GENE, "self_loop_gene", GENE)
EDGE_TYPES = (EXPRESS, EXPRESSED_BY, SIMILAR_TO, HOMOLOG_WITH, CELL_SELF_LOOP, GENE_SELF_LOOP)
MISSING_EMBEDDING = ("error", "zero", "mean")
CLUSTER_METHODS = ("leiden", "kmeans")
ATTENTION_KINDS = ("mul", "add")


# --------------------------------------------------------------------------- inputs


@dataclass
class _Expression:
    matrix: sparse.csr_matrix  # cells × genes, float32, explicit zeros removed
    genes: np.ndarray
    cells: np.ndarray


def _expression(data, genes, role: str) -> _Expression:
    """An AnnData (``X``, ``var_names``) or a dense/sparse array with ``genes`` naming its columns."""
    if hasattr(data, "X") and hasattr(data, "var_names"):
        matrix, names, cells = data.X, np.asarray(data.var_names, dtype=object), np.asarray(data.obs_names)
        if genes is not None:
            raise InputError(None, f"{role}_genes", f"gene names were given for the {role} AnnData",
                             f"leave {role}_genes unset: an AnnData's var_names name its genes")
    else:
        matrix, names, cells = data, genes, None
    if names is None:
        raise InputError(None, f"{role}_genes", f"the {role} expression is an array without gene names",
                         f"pass {role}_genes= with one name per column, or an AnnData")
    try:
        matrix = sparse.csr_matrix(matrix, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise InputError(None, role, f"the {role} expression is not a numeric cells × genes matrix ({error})",
                         "pass log-normalised expression as an AnnData, numpy array or scipy sparse matrix") from error
    names = np.asarray([str(name) for name in names], dtype=object)
    if names.ndim != 1 or len(names) != matrix.shape[1]:
        raise InputError(None, f"{role}_genes", f"{len(names)} gene names for {matrix.shape[1]} {role} columns",
                         "give exactly one gene name per column")
    duplicated = pd.Index(names).duplicated()
    if duplicated.any():
        raise InputError(None, f"{role}_genes", f"{int(duplicated.sum())} duplicated {role} gene names "
                         f"(e.g. {list(names[duplicated][:3])})", "make gene names unique (sum or drop duplicates)")
    if not np.isfinite(matrix.data).all():
        raise InputError(None, role, f"the {role} expression holds NaN or infinite values",
                         "remove or impute them before annotation")
    if (matrix.data < 0).any():
        raise InputError(None, role, f"the {role} expression holds negative values",
                         "pass log-normalised expression (log1p of size-normalised counts), not z-scores")
    matrix.eliminate_zeros()
    if matrix.shape[0] < 2:
        raise InputError(None, role, f"the {role} expression has {matrix.shape[0]} cells", "give at least 2 cells")
    if cells is None:
        cells = np.asarray([f"{role}_{i}" for i in range(matrix.shape[0])], dtype=object)
    return _Expression(matrix, names, np.asarray(cells, dtype=object).astype(str))


def _reference_labels(labels, reference, n_cells: int) -> np.ndarray:
    if isinstance(labels, str):
        obs = getattr(reference, "obs", None)
        if obs is None or labels not in obs:
            raise InputError(None, "reference_labels", f"'{labels}' is not a column of reference.obs",
                             "pass an obs column of the reference AnnData, or one label per reference cell")
        labels = obs[labels]
    values = pd.Series(np.asarray(labels, dtype=object).ravel() if np.ndim(labels) else [labels], dtype=object)
    if len(values) != n_cells:
        raise InputError(None, "reference_labels", f"{len(values)} labels for {n_cells} reference cells",
                         "give exactly one label per reference cell, in the row order of the reference matrix")
    if values.isna().any():
        raise InputError(None, "reference_labels", f"{int(values.isna().sum())} reference cells have no label",
                         "drop unlabelled cells from the reference")
    return values.astype(str).to_numpy()


def _pair_table(pairs, field_name: str) -> pd.DataFrame:
    """Two columns (reference gene, query gene), strings, unique rows."""
    if isinstance(pairs, pd.DataFrame):
        if pairs.shape[1] < 2:
            raise InputError(None, field_name, f"the table has {pairs.shape[1]} column(s)",
                             "give a table whose first two columns are reference gene, query gene")
        frame = pairs.iloc[:, :2].copy()
    else:
        array = np.asarray(list(pairs), dtype=object)
        if array.ndim != 2 or array.shape[1] != 2:
            raise InputError(None, field_name, f"expected (reference gene, query gene) pairs, got shape {array.shape}",
                             "give a two-column table or a list of pairs")
        frame = pd.DataFrame(array)
    frame.columns = ["reference", "query"]
    frame = frame.dropna().astype(str).drop_duplicates().reset_index(drop=True)
    if frame.empty:
        raise InputError(None, field_name, "the table has no gene pair", "give at least one homologous gene pair")
    return frame


def one_to_one_pairs(homology) -> pd.DataFrame:
    """The pairs of ``homology`` whose reference gene and query gene each occur in exactly one pair."""
    table = _pair_table(homology, "homology")
    single_ref = table["reference"].map(table["reference"].value_counts()) == 1
    single_query = table["query"].map(table["query"].value_counts()) == 1
    return table[single_ref & single_query].reset_index(drop=True)


def _node_indices(expression: _Expression, chosen, role: str) -> np.ndarray:
    if chosen is None:
        return np.arange(len(expression.genes))
    chosen = pd.unique(np.asarray([str(gene) for gene in chosen], dtype=object))
    index = pd.Index(expression.genes).get_indexer(chosen)
    absent = index < 0
    if absent.any():
        raise InputError(None, "node_genes", f"{int(absent.sum())} of {len(chosen)} {role} node genes are not "
                         f"columns of the {role} matrix (e.g. {list(chosen[absent][:3])})",
                         f"choose node genes among the {role} gene names")
    if len(index) == 0:
        raise InputError(None, "node_genes", f"no {role} node gene", f"give at least one {role} node gene")
    return np.sort(index)


def _zscore(dense: np.ndarray) -> np.ndarray:
    values = dense.astype(np.float64)
    mean = values.mean(axis=0)
    std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
    std[std == 0] = 1.0
    return ((values - mean) / std).astype(np.float32)


def _scaled_pca(matrix: sparse.csr_matrix, n_pcs: int, seed: int = 0) -> np.ndarray:
    """PCA of the column-z-scored matrix, without densifying it (centring is implicit in ARPACK)."""
    from sklearn.decomposition import PCA

    n_cells, n_genes = matrix.shape
    n_components = min(int(n_pcs), n_cells - 1, n_genes - 1)
    if n_components < 1:
        return np.zeros((n_cells, 0), dtype=np.float32)
    values = matrix.astype(np.float64)
    mean = np.asarray(values.mean(axis=0)).ravel()
    mean_square = np.asarray(values.multiply(values).mean(axis=0)).ravel()
    std = np.sqrt(np.clip(mean_square - mean ** 2, 0, None) * n_cells / (n_cells - 1))
    scale = np.divide(1.0, std, out=np.zeros_like(std), where=std > 0)
    scaled = sparse.csr_matrix(values @ sparse.diags(scale))
    pca = PCA(n_components=n_components, svd_solver="arpack", random_state=seed)
    return pca.fit_transform(scaled).astype(np.float32)


def _knn_pairs(points: np.ndarray, n_neighbors: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Symmetrised kNN edges (both directions, no self-loops); ``n_neighbors`` counts the point itself."""
    from sklearn.neighbors import NearestNeighbors

    n = len(points)
    k = min(int(n_neighbors) - 1, n - 1)
    if k < 1 or points.shape[1] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    neighbours = NearestNeighbors(n_neighbors=k + 1, metric=metric, algorithm="brute").fit(points)
    index = neighbours.kneighbors(points, return_distance=False)
    is_self = index == np.arange(n)[:, None]
    keep = ~is_self
    keep[~is_self.any(axis=1), -1] = False  # self not returned (ties): drop the farthest instead
    src = np.repeat(np.arange(n), k)
    dst = index[keep]
    adjacency = sparse.coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n)).tocsr()
    adjacency = (adjacency + adjacency.T).tocoo()
    return adjacency.row.astype(np.int64), adjacency.col.astype(np.int64)


def _mutual_pairs(a: np.ndarray, b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours between the rows of ``a`` and ``b`` (cosine)."""
    from sklearn.neighbors import NearestNeighbors

    ab = NearestNeighbors(n_neighbors=min(k, len(b)), metric="cosine", algorithm="brute").fit(b)
    ba = NearestNeighbors(n_neighbors=min(k, len(a)), metric="cosine", algorithm="brute").fit(a)
    near_b = ab.kneighbors(a, return_distance=False)
    near_a = ba.kneighbors(b, return_distance=False)
    forward = np.repeat(np.arange(len(a)), near_b.shape[1]) * len(b) + near_b.ravel()
    backward = near_a.ravel() * len(b) + np.repeat(np.arange(len(b)), near_a.shape[1])
    mutual = np.intersect1d(forward, backward)
    return (mutual // len(b)).astype(np.int64), (mutual % len(b)).astype(np.int64)


def _gene_embedding_matrix(table, names: Sequence[str], missing: str) -> np.ndarray:
    if missing not in MISSING_EMBEDDING:
        raise InputError(None, "missing_embedding", f"unknown value '{missing}'", f"use one of {MISSING_EMBEDDING}")
    if isinstance(table, pd.DataFrame):
        frame = table
    elif isinstance(table, Mapping):
        frame = pd.DataFrame.from_dict(dict(table), orient="index")
    else:
        raise InputError(None, "gene_embeddings", f"got {type(table).__name__}",
                         "give a DataFrame indexed by gene ID (one row per gene, one column per dimension) "
                         "or a dict gene ID → vector")
    index = pd.Index([str(gene) for gene in frame.index])
    if index.has_duplicates:
        raise InputError(None, "gene_embeddings", f"{int(index.duplicated().sum())} duplicated gene IDs "
                         f"(e.g. {list(index[index.duplicated()][:3])})", "keep one row per gene ID")
    try:
        values = frame.to_numpy(dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise InputError(None, "gene_embeddings", "the table holds non-numeric values",
                         "keep only the embedding dimensions as columns (gene IDs as the index)") from error
    if values.ndim != 2 or values.shape[1] == 0 or not np.isfinite(values).all():
        raise InputError(None, "gene_embeddings", "the table is empty or holds NaN/infinite values",
                         "give finite vectors of at least one dimension")
    rows = index.get_indexer(list(names))
    absent = rows < 0
    n_absent = int(absent.sum())
    examples = list(np.asarray(names, dtype=object)[absent][:5])
    if n_absent == len(names):
        raise InputError(None, "gene_embeddings", f"none of the {len(names)} gene nodes is in the embedding table "
                         f"(e.g. {examples})", "index the table by the same gene IDs as the expression matrices")
    if n_absent and missing == "error":
        raise InputError(None, "gene_embeddings", f"{n_absent} of {len(names)} gene nodes have no embedding "
                         f"(e.g. {examples})",
                         "add rows for them (a mouse gene may need its human homolog's ID, as GeneCompass tokens "
                         "use), drop them from node_genes, or pass missing_embedding='zero' (zero vector: the gene "
                         "starts from its expressing cells only, as in plain CAME) or 'mean' (the mean embedding "
                         "of the genes found)")
    out = np.zeros((len(names), values.shape[1]), dtype=np.float32)
    out[~absent] = values[rows[~absent]]
    if n_absent:
        if missing == "mean":
            out[absent] = values[rows[~absent]].mean(axis=0)
        log.warning("%d of %d gene nodes have no embedding; using missing_embedding='%s'", n_absent, len(names),
                    missing)
    return out


# --------------------------------------------------------------------------- graph


def build_came_graph(reference, query, homology, reference_labels, *, reference_genes=None, query_genes=None,
                     node_genes: tuple[Sequence[str], Sequence[str]] | None = None, feature_pairs=None,
                     gene_embeddings=None, missing_embedding: str = "error", n_neighbors: int = 5,
                     n_pcs: int = 30, cross_species_neighbors: int = 0,
                     species: tuple[str, str] = ("reference", "query")) -> HeteroData:
    """The CAME cell–gene graph of a labelled reference and an unlabelled query (see the module doc).

    ``reference``/``query``: AnnData or cells × genes arrays (dense or sparse)
    of log-normalised expression; arrays need ``reference_genes``/``query_genes``.
    ``homology``: a table whose first two columns are (reference gene, query
    gene), or a list of pairs; one-to-one and many-to-many pairs alike.
    ``reference_labels``: one label per reference cell, or an obs column name.
    ``node_genes``: (reference genes, query genes) to make gene nodes (default:
    all genes; CAME uses HVGs ∪ DEGs, see :func:`select_genes`).
    ``feature_pairs``: the (reference, query) homologous pairs whose
    expression forms the cell features (default: every one-to-one pair of
    ``homology`` with both genes measured).
    ``gene_embeddings``: GeneCompass gene vectors (DataFrame indexed by gene
    ID, or dict), looked up by each node's gene name in both species;
    ``missing_embedding`` decides what a gene without a row gets ("error",
    "zero" or "mean"). ``n_neighbors`` (counting the cell itself, CAME: 5)
    and ``n_pcs`` set the within-species kNN; ``cross_species_neighbors`` > 0
    adds mutual-nearest-neighbour edges across species (CAME: none).
    """
    if len(species) != 2:
        raise InputError(None, "species", f"expected two names, got {species}", "give (reference, query) names")
    for name, value in (("n_neighbors", n_neighbors), ("n_pcs", n_pcs),
                        ("cross_species_neighbors", cross_species_neighbors)):
        if int(value) < 0:
            raise InputError(None, name, f"must be >= 0, got {value}", f"set {name} to 0 or more")
    ref = _expression(reference, reference_genes, "reference")
    qry = _expression(query, query_genes, "query")
    labels = _reference_labels(reference_labels, reference, ref.matrix.shape[0])
    table = _pair_table(homology, "homology")
    if node_genes is not None and len(node_genes) != 2:
        raise InputError(None, "node_genes", "expected (reference genes, query genes)", "give a pair of gene lists")
    ref_nodes = _node_indices(ref, None if node_genes is None else node_genes[0], "reference")
    qry_nodes = _node_indices(qry, None if node_genes is None else node_genes[1], "query")
    n_ref_cells, n_qry_cells = ref.matrix.shape[0], qry.matrix.shape[0]
    n_ref_genes, n_qry_genes = len(ref_nodes), len(qry_nodes)

    # Homology edges between gene nodes.
    ref_pos = pd.Index(ref.genes[ref_nodes]).get_indexer(table["reference"])
    qry_pos = pd.Index(qry.genes[qry_nodes]).get_indexer(table["query"])
    linked = (ref_pos >= 0) & (qry_pos >= 0)
    if not linked.any():
        raise InputError(None, "homology", f"none of the {len(table)} homology pairs links a reference gene node to "
                         f"a query gene node ({int((ref_pos >= 0).sum())} pairs matched a reference node, "
                         f"{int((qry_pos >= 0).sum())} a query node)",
                         "use the gene identifiers of the expression matrices in the table (e.g. Ensembl IDs in "
                         "both), reference species in the first column, and keep homologous genes among node_genes")
    homolog_src = ref_pos[linked]
    homolog_dst = qry_pos[linked] + n_ref_genes
    homolog = np.stack([np.concatenate([homolog_src, homolog_dst]), np.concatenate([homolog_dst, homolog_src])])

    # Cell features: z-scored expression of one-to-one homologous pairs.
    pairs = one_to_one_pairs(table) if feature_pairs is None else _pair_table(feature_pairs, "feature_pairs")
    feat_ref = pd.Index(ref.genes).get_indexer(pairs["reference"])
    feat_qry = pd.Index(qry.genes).get_indexer(pairs["query"])
    measured = (feat_ref >= 0) & (feat_qry >= 0)
    if feature_pairs is not None and not measured.all():
        raise InputError(None, "feature_pairs", f"{int((~measured).sum())} feature pairs name a gene that is not "
                         "measured", "give feature pairs whose reference and query genes are matrix columns")
    if not measured.any():
        raise InputError(None, "homology", "no one-to-one homologous gene pair has both genes measured, so the "
                         "cells share no feature", "give a homology table with one-to-one pairs among the measured "
                         "genes, or pass feature_pairs=")
    feat_ref, feat_qry, pairs = feat_ref[measured], feat_qry[measured], pairs[measured]
    x_cell = np.vstack([_zscore(ref.matrix[:, feat_ref].toarray()), _zscore(qry.matrix[:, feat_qry].toarray())])

    # Cell–gene edges from the non-zero expression values of the node genes.
    express_parts = []
    for expression, nodes, cell_offset, gene_offset in ((ref, ref_nodes, 0, 0),
                                                        (qry, qry_nodes, n_ref_cells, n_ref_genes)):
        block = expression.matrix[:, nodes].tocsr()
        block.sort_indices()
        block = block.tocoo()
        express_parts.append((block.row + cell_offset, block.col + gene_offset, block.data))
    cells = np.concatenate([part[0] for part in express_parts]).astype(np.int64)
    genes = np.concatenate([part[1] for part in express_parts]).astype(np.int64)
    values = np.concatenate([part[2] for part in express_parts]).astype(np.float32)

    # Cell–cell kNN within each species (+ optional mutual neighbours across species).
    ref_pca = _scaled_pca(ref.matrix[:, ref_nodes], n_pcs)
    qry_pca = _scaled_pca(qry.matrix[:, qry_nodes], n_pcs)
    ref_src, ref_dst = _knn_pairs(ref_pca, n_neighbors, "cosine")
    qry_src, qry_dst = _knn_pairs(qry_pca, n_neighbors, "cosine")
    sim_src = [ref_src, qry_src + n_ref_cells]
    sim_dst = [ref_dst, qry_dst + n_ref_cells]
    if cross_species_neighbors > 0:
        a, b = _mutual_pairs(x_cell[:n_ref_cells], x_cell[n_ref_cells:], int(cross_species_neighbors))
        sim_src += [a, b + n_ref_cells]
        sim_dst += [b + n_ref_cells, a]
        log.info("%d mutual-nearest-neighbour cell pairs across species", len(a))
    n_cells = n_ref_cells + n_qry_cells
    similar = sparse.coo_matrix((np.ones(sum(len(s) for s in sim_src)), (np.concatenate(sim_src),
                                np.concatenate(sim_dst))), shape=(n_cells, n_cells)).tocsr().tocoo()

    classes = sorted(set(labels))
    y = np.full(n_cells, -1, dtype=np.int64)
    y[:n_ref_cells] = np.searchsorted(classes, labels)
    n_genes = n_ref_genes + n_qry_genes
    gene_names = list(ref.genes[ref_nodes]) + list(qry.genes[qry_nodes])

    graph = HeteroData()
    graph[CELL].num_nodes = n_cells
    graph[CELL].x = torch.from_numpy(x_cell)
    graph[CELL].y = torch.from_numpy(y)
    graph[CELL].species = torch.cat([torch.zeros(n_ref_cells, dtype=torch.long),
                                     torch.ones(n_qry_cells, dtype=torch.long)])
    graph[CELL].names = list(ref.cells) + list(qry.cells)
    graph[GENE].num_nodes = n_genes
    graph[GENE].species = torch.cat([torch.zeros(n_ref_genes, dtype=torch.long),
                                     torch.ones(n_qry_genes, dtype=torch.long)])
    graph[GENE].names = gene_names
    if gene_embeddings is not None:
        graph[GENE].x = torch.from_numpy(_gene_embedding_matrix(gene_embeddings, gene_names, missing_embedding))
    weights = torch.from_numpy(values)
    graph[EXPRESS].edge_index = torch.from_numpy(np.stack([cells, genes]))
    graph[EXPRESS].edge_weight = weights
    graph[EXPRESSED_BY].edge_index = torch.from_numpy(np.stack([genes, cells]))
    graph[EXPRESSED_BY].edge_weight = weights.clone()
    graph[SIMILAR_TO].edge_index = torch.from_numpy(np.stack([similar.row, similar.col]).astype(np.int64))
    graph[HOMOLOG_WITH].edge_index = torch.from_numpy(homolog.astype(np.int64))
    graph[CELL_SELF_LOOP].edge_index = torch.arange(n_cells).repeat(2, 1)
    graph[GENE_SELF_LOOP].edge_index = torch.arange(n_genes).repeat(2, 1)
    graph.classes = classes
    graph.species_names = [str(name) for name in species]
    graph.feature_pairs = [list(pair) for pair in pairs.itertuples(index=False)]
    graph.query_pca = torch.from_numpy(qry_pca)
    graph.validate(raise_on_error=True)
    log.info("CAME graph: %d+%d cells, %d+%d genes, %d features, %d cell-gene, %d cell-cell, %d homology edges",
             n_ref_cells, n_qry_cells, n_ref_genes, n_qry_genes, x_cell.shape[1], len(cells), similar.nnz,
             homolog.shape[1])
    return graph


# --------------------------------------------------------------------------- clustering and gene choice


def cluster_cells(embedding, *, method: str = "leiden", n_clusters: int | None = None, resolution: float = 0.4,
                  n_neighbors: int = 20, seed: int = 0) -> np.ndarray:
    """Cluster the rows of ``embedding`` (e.g. a PCA); returns one integer label per row.

    ``"leiden"`` (CAME): modularity Leiden (igraph, 2 iterations, as scanpy's
    igraph flavour) at ``resolution`` on the symmetrised ``n_neighbors``-NN
    graph (Euclidean, counting the cell itself). ``"kmeans"``: k-means with
    ``n_clusters`` (10 restarts). Both are seeded by ``seed``.
    """
    points = np.asarray(embedding, dtype=np.float64)
    if points.ndim != 2 or len(points) < 2:
        raise InputError(None, "embedding", f"expected a cells × dimensions matrix of >= 2 cells, got {points.shape}",
                         "pass one row per cell")
    if method == "kmeans":
        from sklearn.cluster import KMeans

        if n_clusters is None or int(n_clusters) < 1:
            raise InputError(None, "n_clusters", f"k-means needs n_clusters >= 1, got {n_clusters}",
                             "pass n_clusters (e.g. the number of reference cell types)")
        k = min(int(n_clusters), len(points))
        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(points).astype(np.int64)
    if method != "leiden":
        raise InputError(None, "cluster_method", f"unknown method '{method}'", f"use one of {CLUSTER_METHODS}")
    try:
        import igraph
    except ImportError as error:
        raise ImportError("Leiden clustering needs the 'igraph' package (pip: igraph, conda-forge: python-igraph); "
                          "install it or use cluster_method='kmeans'") from error
    src, dst = _knn_pairs(points, n_neighbors, "euclidean")
    keep = src < dst
    graph = igraph.Graph(n=len(points), edges=np.stack([src[keep], dst[keep]], axis=1).tolist(), directed=False)
    igraph.set_random_number_generator(random.Random(seed))
    try:
        partition = graph.community_leiden(objective_function="modularity", resolution=resolution, n_iterations=2)
    finally:
        igraph.set_random_number_generator(random)
    return np.asarray(partition.membership, dtype=np.int64)


def cluster_query(query, *, query_genes=None, genes: Sequence[str] | None = None, n_pcs: int = 30,
                  method: str = "leiden", n_clusters: int | None = None, resolution: float = 0.4,
                  n_neighbors: int = 20, seed: int = 0, n_top_genes: int | None = None) -> np.ndarray:
    """CAME's pre-clustering of the query: PCA of the z-scored ``genes``, or of the query's
    ``n_top_genes`` HVGs (CAME: 2000), or of all genes; then :func:`cluster_cells`. Returns one cluster
    label per query cell."""
    expression = _expression(query, query_genes, "query")
    if genes is None and n_top_genes is not None:
        genes = _hvgs(expression, n_top_genes)
    columns = _node_indices(expression, genes, "query")
    pca = _scaled_pca(expression.matrix[:, columns], n_pcs, seed)
    return cluster_cells(pca, method=method, n_clusters=n_clusters, resolution=resolution,
                         n_neighbors=n_neighbors, seed=seed)


@dataclass
class GeneSelection:
    """CAME's gene choice: node genes per species and the one-to-one feature pairs."""

    reference_nodes: list[str]
    query_nodes: list[str]
    feature_pairs: pd.DataFrame  # columns reference, query
    reference_hvgs: list[str]
    query_hvgs: list[str]
    reference_degs: list[str]
    query_degs: list[str]

    @property
    def node_genes(self) -> tuple[list[str], list[str]]:
        return self.reference_nodes, self.query_nodes


def _hvgs(expression: _Expression, n_top_genes: int) -> list[str]:
    import anndata
    import scanpy as sc

    adata = anndata.AnnData(expression.matrix.copy(), obs=pd.DataFrame(index=expression.cells),
                            var=pd.DataFrame(index=expression.genes))
    sc.pp.highly_variable_genes(adata, n_top_genes=min(int(n_top_genes), adata.n_vars), flavor="seurat")
    return list(adata.var_names[adata.var["highly_variable"].to_numpy()])


def _degs(expression: _Expression, groups: np.ndarray, n_degs: int) -> list[str]:
    """Top ``n_degs`` markers per group (t-test; adjusted p <= 0.05, log2 fold change >= 0.25,
    detected in >= 10% of the group: CAME's cut-offs), in group order, unique."""
    import anndata
    import scanpy as sc

    groups = pd.Series(np.asarray(groups).astype(str))
    sizes = groups.map(groups.value_counts())
    keep = (sizes >= 2).to_numpy()
    if len(set(groups[keep])) < 2:
        return []
    adata = anndata.AnnData(expression.matrix[keep].copy(), var=pd.DataFrame(index=expression.genes))
    adata.obs_names = expression.cells[keep]
    adata.obs["group"] = pd.Categorical(groups[keep].to_numpy())
    sc.tl.rank_genes_groups(adata, "group", method="t-test", pts=True, use_raw=False)
    result = adata.uns["rank_genes_groups"]
    chosen: list[str] = []
    for group in adata.obs["group"].cat.categories:
        frame = pd.DataFrame({key: result[key][group] for key in ("names", "logfoldchanges", "pvals_adj")})
        frame["pts"] = frame["names"].map(result["pts"][group])
        frame = frame[(frame["pvals_adj"] <= 0.05) & (frame["logfoldchanges"] >= 0.25) & (frame["pts"] >= 0.1)]
        chosen.extend(frame["names"].head(int(n_degs)).tolist())
    return list(pd.unique(np.asarray(chosen, dtype=object)))


def select_genes(reference, query, homology, reference_labels, query_clusters, *, reference_genes=None,
                 query_genes=None, n_top_genes: int = 2000, n_degs: int = 50,
                 max_union_features: int = 3000) -> GeneSelection:
    """CAME's gene choice (needs scanpy).

    Per species: HVGs (scanpy "seurat" flavour, ``n_top_genes``) and DEGs
    (top ``n_degs`` per reference cell type / per query cluster). Feature
    pairs: the one-to-one homologous pairs with a DEG on either side (on both
    sides when the two DEG lists together reach ``max_union_features``), both
    genes measured. Node genes: HVGs ∪ DEGs of each species plus, through the
    homology table, the measured homologs of the other species' HVGs ∪ DEGs.
    """
    ref = _expression(reference, reference_genes, "reference")
    qry = _expression(query, query_genes, "query")
    labels = _reference_labels(reference_labels, reference, ref.matrix.shape[0])
    clusters = np.asarray(query_clusters)
    if clusters.ndim != 1 or len(clusters) != qry.matrix.shape[0]:
        raise InputError(None, "query_clusters", f"{len(clusters)} cluster labels for {qry.matrix.shape[0]} query "
                         "cells", "give one cluster label per query cell (see cluster_query)")
    table = _pair_table(homology, "homology")
    ref_hvgs, qry_hvgs = _hvgs(ref, n_top_genes), _hvgs(qry, n_top_genes)
    ref_degs, qry_degs = _degs(ref, labels, n_degs), _degs(qry, clusters, n_degs)

    ref_measured = table["reference"].isin(set(ref.genes))
    qry_measured = table["query"].isin(set(qry.genes))
    one = one_to_one_pairs(table)
    one = one[one["reference"].isin(set(ref.genes)) & one["query"].isin(set(qry.genes))]
    in_ref, in_qry = one["reference"].isin(set(ref_degs)), one["query"].isin(set(qry_degs))
    union = len(ref_degs) + len(qry_degs) < max_union_features
    features = one[(in_ref | in_qry) if union else (in_ref & in_qry)].reset_index(drop=True)

    ref_core, qry_core = set(ref_hvgs) | set(ref_degs), set(qry_hvgs) | set(qry_degs)
    linked = table[(table["reference"].isin(ref_core) | table["query"].isin(qry_core)) & ref_measured & qry_measured]
    ref_set, qry_set = ref_core | set(linked["reference"]), qry_core | set(linked["query"])
    return GeneSelection(reference_nodes=[gene for gene in ref.genes if gene in ref_set],
                         query_nodes=[gene for gene in qry.genes if gene in qry_set],
                         feature_pairs=features, reference_hvgs=ref_hvgs, query_hvgs=qry_hvgs,
                         reference_degs=ref_degs, query_degs=qry_degs)


# --------------------------------------------------------------------------- model


@dataclass
class CameConfig:
    """Model and training settings; defaults are CAME's except the epoch counts.

    CAME trains 350 epochs and selects from epoch 100 (``CameConfig.came_defaults()``);
    the defaults here (100, 30) keep a CPU run short. ``select_from_epoch`` is
    0-based; CAME's ``n_pass = 100`` is ``select_from_epoch = 99``.
    """

    hidden_dim: int = 128
    n_hidden_layers: int = 2
    share_hidden_weights: bool = True
    n_heads: int = 8
    attention: str = "add"  # came 0.1.13's (PARAMETERS.py); "mul" is its older alternative
    negative_slope: float = 0.05
    attention_negative_slope: float = 0.2
    dropout: float = 0.2
    feature_dropout: float = 0.01  # classifier input
    attention_dropout: float = 0.6
    separate_gene_self_loop: bool = False
    use_edge_weight: bool = False  # CAME: expression values are not used as edge weights
    label_smoothing: float = 0.1
    multilabel_weight: float = 1.0
    class_weights: bool = True
    forward_passes: int = 1   # came 0.1.13 (two summed passes were its older train_v0)
    lr: float = 5e-4          # came 0.1.13: Trainer(lr=1e-3 / 2)
    weight_decay: float = 1e-2
    n_epochs: int = 100
    select_from_epoch: int = 30
    ami_tolerance: float = 0.0   # came 0.1.13 keeps the exact best AMI
    eval_every: int = 1
    dropout_at_inference: bool = True
    cluster_method: str = "leiden"
    cluster_resolution: float = 0.4
    cluster_neighbors: int = 20
    cluster_seed: int = 0

    @classmethod
    def came_defaults(cls, **overrides) -> CameConfig:
        """CAME's full schedule: 350 epochs, checkpoints from epoch index 99."""
        return cls(**{"n_epochs": 350, "select_from_epoch": 99, **overrides})

    def __post_init__(self):
        for name in ("hidden_dim", "n_heads", "forward_passes", "n_epochs", "eval_every", "cluster_neighbors"):
            if int(getattr(self, name)) < 1:
                raise InputError(None, name, f"must be at least 1, got {getattr(self, name)}", f"set {name} >= 1")
        if int(self.n_hidden_layers) < 0:
            raise InputError(None, "n_hidden_layers", f"must be >= 0, got {self.n_hidden_layers}", "set it >= 0")
        if not 0 <= int(self.select_from_epoch) < int(self.n_epochs):
            raise InputError(None, "select_from_epoch", f"{self.select_from_epoch} is outside the {self.n_epochs} "
                             "epochs", "choose 0 <= select_from_epoch < n_epochs")
        if self.attention not in ATTENTION_KINDS:
            raise InputError(None, "attention", f"unknown kind '{self.attention}'", f"use one of {ATTENTION_KINDS}")
        if self.cluster_method not in CLUSTER_METHODS:
            raise InputError(None, "cluster_method", f"unknown method '{self.cluster_method}'",
                             f"use one of {CLUSTER_METHODS}")
        for name in ("dropout", "feature_dropout", "attention_dropout", "label_smoothing"):
            if not 0 <= float(getattr(self, name)) < 1:
                raise InputError(None, name, f"must be in [0, 1), got {getattr(self, name)}", f"set {name} in [0, 1)")
        if self.lr <= 0 or self.weight_decay < 0 or self.multilabel_weight < 0 or self.ami_tolerance < 0:
            raise InputError(None, "config", "lr must be > 0; weight_decay, multilabel_weight and ami_tolerance >= 0",
                             "fix the offending value")


@dataclass
class _GraphTensors:
    x: dict[str, torch.Tensor]
    adjacency: dict[tuple, torch.Tensor]  # per relation: sparse (destination × source), rows averaged
    edges: dict[tuple, torch.Tensor]
    num_nodes: dict[str, int]


def mean_adjacency(edge_index: torch.Tensor, n_src: int, n_dst: int, edge_weight=None) -> torch.Tensor:
    """Sparse (destination × source) matrix whose product averages over in-neighbours (CAME's norm='right'):
    entries ``w_e / in-degree`` (``w_e`` = 1 unless edge weights are used; the degree counts edges)."""
    dst, src = edge_index[1], edge_index[0]
    in_degree = degree(dst, n_dst).clamp(min=1)
    values = torch.ones(dst.numel()) if edge_weight is None else edge_weight.float()
    return torch.sparse_coo_tensor(torch.stack([dst, src]), values / in_degree[dst], (n_dst, n_src),
                                   check_invariants=True).coalesce()


def _graph_tensors(graph: HeteroData, config: CameConfig, device: torch.device) -> _GraphTensors:
    edges = {rel: graph[rel].edge_index for rel in EDGE_TYPES}
    if not config.separate_gene_self_loop:  # CAME: the identity is part of the homology adjacency
        edges[HOMOLOG_WITH] = torch.cat([edges[HOMOLOG_WITH], edges[GENE_SELF_LOOP]], dim=1)
    num_nodes = {CELL: int(graph[CELL].num_nodes), GENE: int(graph[GENE].num_nodes)}
    adjacency = {}
    for rel, edge_index in edges.items():
        weight = graph[rel].edge_weight if config.use_edge_weight and rel in (EXPRESS, EXPRESSED_BY) else None
        adjacency[rel] = mean_adjacency(edge_index, num_nodes[rel[0]], num_nodes[rel[2]], weight).to(device)
    x = {CELL: graph[CELL].x.to(device)}
    if "x" in graph[GENE]:
        x[GENE] = graph[GENE].x.to(device)
    return _GraphTensors(x=x, adjacency=adjacency, edges={EXPRESSED_BY: edges[EXPRESSED_BY].to(device)},
                         num_nodes=num_nodes)


class MeanOverNeighbours(MessagePassing):
    """Average of the neighbours' messages, as one sparse product with a row-normalised adjacency."""

    def __init__(self):
        super().__init__(aggr="add")

    def forward(self, x_src: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        return self.propagate(adjacency, x=(x_src, None))

    def message_and_aggregate(self, edge_index, x):
        return torch.sparse.mm(edge_index, x[0])


class RelationalLayer(nn.Module):
    """CAME's ``GeneralRGCLayer``: per relation ``mean_{u→v} W_r h_u``, summed per node type,
    then LayerNorm, bias, leaky ReLU, dropout."""

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, relations: Sequence[tuple], *,
                 negative_slope: float, dropout: float):
        super().__init__()
        self.relations = list(relations)
        self.weights = nn.ModuleDict({rel[1]: nn.Linear(in_dims[rel[0]], out_dim, bias=False)
                                      for rel in self.relations})
        node_types = sorted({rel[2] for rel in self.relations})
        self.norms = nn.ModuleDict({ntype: nn.LayerNorm(out_dim) for ntype in node_types})
        self.bias = nn.ParameterDict({ntype: nn.Parameter(torch.zeros(out_dim)) for ntype in node_types})
        self.aggregate = MeanOverNeighbours()
        self.activation = nn.LeakyReLU(negative_slope)
        self.dropout = nn.Dropout(dropout)
        for linear in self.weights.values():
            nn.init.xavier_uniform_(linear.weight, gain=nn.init.calculate_gain("relu"))

    def forward(self, x: Mapping[str, torch.Tensor], graph: _GraphTensors) -> dict[str, torch.Tensor]:
        summed: dict[str, torch.Tensor] = {}
        for rel in self.relations:
            src, name, dst = rel
            if src not in x:
                continue
            message = self.aggregate(self.weights[name](x[src]), graph.adjacency[rel])
            summed[dst] = message if dst not in summed else summed[dst] + message
        return {ntype: self.dropout(self.activation(self.norms[ntype](h) + self.bias[ntype]))
                for ntype, h in summed.items()}


class CellGeneAttention(nn.Module):
    """CAME's ``GraphAttentionLayer`` from genes to cells.

    Separate source/destination projections; per head the score
    ``leaky_relu(el * er)`` ("mul", CAME's default) or ``leaky_relu(el + er)``
    ("add", the GAT paper), a softmax over each cell's genes, then heads
    averaged. The weighted sum is one sparse product per head, so memory grows
    with edges × heads, not edges × heads × classes.
    """

    def __init__(self, in_dim: int, out_dim: int, n_heads: int, *, attention: str = "mul",
                 negative_slope: float = 0.2, feature_dropout: float = 0.01, attention_dropout: float = 0.6):
        super().__init__()
        self.n_heads, self.out_dim, self.attention = n_heads, out_dim, attention
        self.lin_src = nn.Linear(in_dim, n_heads * out_dim, bias=False)
        self.lin_dst = nn.Linear(in_dim, n_heads * out_dim, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, n_heads, out_dim))
        self.att_dst = nn.Parameter(torch.empty(1, n_heads, out_dim))
        self.negative_slope = negative_slope
        self.feature_dropout = nn.Dropout(feature_dropout)
        self.attention_dropout = nn.Dropout(attention_dropout)
        gain = nn.init.calculate_gain("relu")
        for weight in (self.lin_src.weight, self.lin_dst.weight, self.att_src, self.att_dst):
            nn.init.xavier_normal_(weight, gain=gain)

    def forward(self, x_gene, x_cell, edge_index, return_attention: bool = False):
        """Cell outputs (cells × out_dim); with ``return_attention`` also the attention (edges × heads)."""
        n_src, n_dst = x_gene.size(0), x_cell.size(0)
        h_src = self.lin_src(self.feature_dropout(x_gene)).view(n_src, self.n_heads, self.out_dim)
        h_dst = self.lin_dst(self.feature_dropout(x_cell)).view(n_dst, self.n_heads, self.out_dim)
        src, dst = edge_index
        key = dst * n_src + src
        order = None if bool((key[1:] > key[:-1]).all()) else torch.argsort(key)
        if order is not None:  # the sparse products below want (cell, gene)-sorted, unique edges
            src, dst = src[order], dst[order]
        el = (h_src * self.att_src).sum(-1)[src]
        er = (h_dst * self.att_dst).sum(-1)[dst]
        score = F.leaky_relu(el * er if self.attention == "mul" else el + er, self.negative_slope)
        alpha = softmax(score, dst, num_nodes=n_dst)
        dropped = self.attention_dropout(alpha)
        index = torch.stack([dst, src])
        heads = []
        for head in range(self.n_heads):
            weights = torch.sparse_coo_tensor(index, dropped[:, head], (n_dst, n_src), is_coalesced=True,
                                              check_invariants=False)
            heads.append(torch.sparse.mm(weights, h_src[:, head]))
        out = torch.stack(heads, dim=1).mean(dim=1)
        if not return_attention:
            return out
        if order is not None:
            alpha = torch.empty_like(alpha).index_copy_(0, order, alpha)
        return out, alpha.detach()


class CameNet(nn.Module):
    """CAME's cell–gene network (``CGGCNet``); ``gene_dim`` > 0 adds the GeneCompass gene input."""

    def __init__(self, cell_dim: int, gene_dim: int, n_classes: int, config: CameConfig):
        super().__init__()
        hidden, slope, dropout = config.hidden_dim, config.negative_slope, config.dropout
        embed_relations = [CELL_SELF_LOOP, EXPRESS] + ([GENE_SELF_LOOP] if gene_dim else [])
        self.embed = RelationalLayer({CELL: cell_dim, GENE: gene_dim}, hidden, embed_relations,
                                     negative_slope=slope, dropout=dropout)
        hidden_relations = [CELL_SELF_LOOP, SIMILAR_TO, EXPRESSED_BY, EXPRESS, HOMOLOG_WITH]
        if config.separate_gene_self_loop:
            hidden_relations.append(GENE_SELF_LOOP)
        n_distinct = 1 if config.share_hidden_weights else config.n_hidden_layers
        self.hidden = nn.ModuleList([RelationalLayer({CELL: hidden, GENE: hidden}, hidden, hidden_relations,
                                                     negative_slope=slope, dropout=dropout)
                                     for _ in range(min(n_distinct, config.n_hidden_layers))])
        self.n_hidden_layers = config.n_hidden_layers
        self.classifier = CellGeneAttention(hidden, n_classes, config.n_heads, attention=config.attention,
                                            negative_slope=config.attention_negative_slope,
                                            feature_dropout=config.feature_dropout,
                                            attention_dropout=config.attention_dropout)
        self.out_norm = nn.LayerNorm(n_classes)
        self.out_bias = nn.Parameter(torch.zeros(n_classes))

    def forward(self, graph: _GraphTensors) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cell logits and the last hidden states ``{"cell": ..., "gene": ...}``."""
        h = self.embed(graph.x, graph)
        for step in range(self.n_hidden_layers):
            h = self.hidden[step % len(self.hidden)](h, graph)
        out = self.classifier(h[GENE], h[CELL], graph.edges[EXPRESSED_BY])
        return self.out_norm(out) + self.out_bias, h


# --------------------------------------------------------------------------- training


def _came_loss(logits, labels, class_weights, onehot, config: CameConfig) -> torch.Tensor:
    """Label-smoothed cross-entropy (+ multi-label BCE), CAME's ``classification_loss``."""
    log_p = F.log_softmax(logits, dim=-1)
    eps = config.label_smoothing
    loss = (1 - eps) * F.nll_loss(log_p, labels, weight=class_weights)
    if eps > 0:
        loss = loss + eps / logits.size(-1) * (-log_p.sum(dim=-1)).mean()
    if config.multilabel_weight > 0:
        loss = loss + config.multilabel_weight * F.binary_cross_entropy_with_logits(logits, onehot,
                                                                                    weight=class_weights)
    return loss


def _class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=n_classes).double()
    weights = torch.where(counts > 0, 1.0 / torch.sqrt(counts + 1), torch.zeros_like(counts))
    return (weights / weights.sum()).float()


def _check_graph(graph) -> None:
    missing = [rel for rel in EDGE_TYPES if not isinstance(graph, HeteroData) or rel not in graph.edge_types]
    if missing or "classes" not in graph or "query_pca" not in graph:
        raise InputError(None, "graph", f"not a CAME graph (missing edge types {missing} or metadata)",
                         "build the graph with build_came_graph")


def _query_truth(query_labels, n_query: int) -> np.ndarray | None:
    if query_labels is None:
        return None
    truth = np.asarray(query_labels, dtype=object).astype(str)
    if truth.ndim != 1 or len(truth) != n_query:
        raise InputError(None, "query_labels", f"{len(truth)} labels for {n_query} query cells",
                         "give one label per query cell, in the row order of the query matrix, or None")
    return truth


def _query_clusters(graph: HeteroData, query_clusters, config: CameConfig) -> np.ndarray:
    n_query = int((graph[CELL].species == 1).sum())
    if query_clusters is None:
        return cluster_cells(graph.query_pca.cpu().numpy(), method=config.cluster_method,
                             n_clusters=len(graph.classes), resolution=config.cluster_resolution,
                             n_neighbors=config.cluster_neighbors, seed=config.cluster_seed)
    clusters = np.asarray(query_clusters)
    if clusters.ndim != 1 or len(clusters) != n_query:
        raise InputError(None, "query_clusters", f"{len(clusters)} cluster labels for {n_query} query cells",
                         "give one cluster label per query cell (see cluster_query), or None to cluster the "
                         "graph's query PCA")
    return pd.factorize(clusters)[0].astype(np.int64)


@dataclass
class CameResult:
    """One trained CAME run: query predictions, embeddings and the selection trace."""

    seed: int
    classes: list[str]
    query_cells: list[str]
    predictions: np.ndarray  # one class label per query cell
    probabilities: np.ndarray  # query cells × classes (softmax)
    selected_epoch: int  # 0-based epoch whose weights were kept; n_epochs = the final weights
    history: pd.DataFrame  # epoch, loss, train_accuracy, ami (NaN where not evaluated)[, query_accuracy]
    gene_names: list[str]
    gene_species: list[str]
    gene_embeddings: np.ndarray  # gene nodes × hidden_dim (last hidden layer)
    cell_embeddings: np.ndarray  # cells × hidden_dim, reference then query
    metrics: dict = field(default_factory=dict)  # vs query labels, reporting only
    state_dict: dict = field(default_factory=dict, repr=False)

    @property
    def ami_trace(self) -> pd.Series:
        """AMI between predictions and query clusters, per evaluated epoch."""
        trace = self.history.set_index("epoch")["ami"]
        return trace[trace.notna()]

    @property
    def selected_ami(self) -> float:
        trace = self.ami_trace
        return float(trace.get(self.selected_epoch, np.nan))

    def probability_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.probabilities, index=self.query_cells, columns=self.classes)

    def gene_embedding_frame(self) -> pd.DataFrame:
        index = pd.MultiIndex.from_arrays([self.gene_species, self.gene_names], names=["species", "gene"])
        return pd.DataFrame(self.gene_embeddings, index=index)


def train_came(graph: HeteroData, query_clusters=None, *, config: CameConfig | None = None, seed: int = 0,
               query_labels=None, device: str = "cpu", progress: bool = False) -> CameResult:
    """Train CAME on ``graph`` and annotate its query cells (see the module doc).

    ``query_clusters``: one cluster label per query cell for the AMI-based
    checkpoint choice (``None``: cluster the graph's query PCA with
    ``config.cluster_method``). ``seed`` seeds weight initialisation and
    dropout (torch's RNG is forked, so the caller's RNG state is untouched).
    ``query_labels`` are only compared with the predictions for the report.
    """
    config = config or CameConfig()
    _check_graph(graph)
    device = resolve_device(device)
    classes = list(graph.classes)
    n_classes = len(classes)
    y = graph[CELL].y
    train_idx = torch.nonzero(y >= 0).view(-1)
    query_idx = torch.nonzero(graph[CELL].species == 1).view(-1)
    truth = _query_truth(query_labels, len(query_idx))
    clusters = _query_clusters(graph, query_clusters, config)
    tensors = _graph_tensors(graph, config, device)
    y_train = y[train_idx].to(device)
    train_idx, query_idx_device = train_idx.to(device), query_idx.to(device)
    class_array = np.asarray(classes, dtype=object)
    gene_dim = int(tensors.x[GENE].shape[1]) if GENE in tensors.x else 0

    fork_devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(int(seed))
        model = CameNet(int(tensors.x[CELL].shape[1]), gene_dim, n_classes, config).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        weights = _class_weights(y_train, n_classes).to(device) if config.class_weights else None
        onehot = F.one_hot(y_train, n_classes).float()
        history, best_state, best_epoch, ami_max = [], None, None, 0.0
        model.train()
        for epoch in tqdm(range(config.n_epochs), desc="CAME", disable=not progress):
            optimizer.zero_grad()
            logits = [model(tensors)[0] for _ in range(config.forward_passes)]
            loss = sum(_came_loss(out[train_idx], y_train, weights, onehot, config) for out in logits)
            with torch.no_grad():
                predicted = logits[0].argmax(dim=1)
                row = {"epoch": epoch, "loss": float(loss.item()),
                       "train_accuracy": float((predicted[train_idx] == y_train).float().mean().item()),
                       "ami": np.nan}
                query_predicted = predicted[query_idx_device].cpu().numpy()
            if epoch % config.eval_every == 0 or epoch == config.n_epochs - 1:
                ami = float(adjusted_mutual_info_score(clusters, query_predicted))
                row["ami"] = ami
                if epoch >= config.select_from_epoch:
                    ami_max = max(ami_max, ami)
                    if ami >= ami_max - config.ami_tolerance > 0:  # weights before this epoch's update
                        best_epoch = epoch
                        best_state = {key: value.detach().clone() for key, value in model.state_dict().items()}
            if truth is not None:  # reporting only: nothing above reads it
                row["query_accuracy"] = float(np.mean(class_array[query_predicted] == truth))
            history.append(row)
            loss.backward()
            optimizer.step()
        if best_state is not None:
            model.load_state_dict(best_state)
            selected = int(best_epoch)
        else:
            log.warning("no epoch reached a positive AMI after epoch %d; keeping the final weights",
                        config.select_from_epoch)
            selected = config.n_epochs
        model.train(config.dropout_at_inference)  # CAME predicts with dropout active in the hidden layers,
        model.classifier.eval()                   # not in its classifier
        with torch.no_grad():
            logits, hidden = model(tensors)
    probabilities = torch.softmax(logits[query_idx_device], dim=1).cpu().numpy()
    predictions = class_array[probabilities.argmax(axis=1)]
    cell_names = list(graph[CELL].names)
    species_names = list(graph.species_names)
    result = CameResult(
        seed=int(seed), classes=classes, query_cells=[cell_names[i] for i in query_idx.tolist()],
        predictions=predictions, probabilities=probabilities, selected_epoch=selected,
        history=pd.DataFrame(history), gene_names=list(graph[GENE].names),
        gene_species=[species_names[i] for i in graph[GENE].species.tolist()],
        gene_embeddings=hidden[GENE].cpu().numpy(), cell_embeddings=hidden[CELL].cpu().numpy(),
        state_dict={key: value.detach().cpu() for key, value in model.state_dict().items()})
    if truth is not None:
        result.metrics = annotation_metrics(truth, predictions)
    log.info("CAME seed %d: kept epoch %d (AMI %.4f)%s", seed, selected, result.selected_ami,
             f", query accuracy {result.metrics['accuracy']:.4f}" if result.metrics else "")
    return result


@dataclass
class CameSeedRuns:
    """Several seeds of one graph: per-seed numbers, their mean and sd (ddof = 1), and the runs."""

    per_seed: pd.DataFrame
    mean: dict
    sd: dict
    results: list[CameResult] = field(repr=False)

    def to_dict(self) -> dict:
        """JSON-ready summary (no arrays)."""
        return {"seeds": self.per_seed["seed"].tolist(), "per_seed": self.per_seed.to_dict(orient="records"),
                "mean": self.mean, "sd": self.sd}


def run_came_seeds(graph: HeteroData, seeds: Sequence[int], *, query_clusters=None, config: CameConfig | None = None,
                   query_labels=None, device: str = "cpu", progress: bool = False) -> CameSeedRuns:
    """Train one CAME run per seed on the same graph and query clusters (clustered once, as CAME).

    Per seed: the kept epoch, its AMI and, when ``query_labels`` are given,
    accuracy and macro-F1 (reported, never used for selection); plus their
    mean and sample sd over seeds (sd 0 for a single seed).
    """
    config = config or CameConfig()
    seeds = [int(seed) for seed in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(None, "seeds", f"got {seeds}", "give one or more distinct seeds")
    _check_graph(graph)
    clusters = _query_clusters(graph, query_clusters, config)
    results = [train_came(graph, clusters, config=config, seed=seed, query_labels=query_labels, device=device,
                          progress=progress) for seed in seeds]
    rows = [{"seed": r.seed, "selected_epoch": r.selected_epoch, "ami": r.selected_ami,
             **{key: r.metrics[key] for key in ("accuracy", "macro_f1") if key in r.metrics}} for r in results]
    per_seed = pd.DataFrame(rows)
    mean, sd = seed_statistics(per_seed)
    return CameSeedRuns(per_seed=per_seed, mean=mean, sd=sd, results=results)


def config_dict(config: CameConfig) -> dict:
    """The settings as a plain dict (for metrics.json next to the results)."""
    return asdict(config)
