"""The GeneCompass update of DeepSEM: a binary gene-gene prior from gene embeddings filters DeepSEM's edges.

Tables only (numpy, pandas): the rules that apply the prior never load torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from genecompass.errors import InputError
from genecompass.tasks.grn.baselines import cosine_matrix
from genecompass.tasks.grn.beeline import check_edges, rank_edges


def embedding_prior(vectors, genes, threshold: float = 0.4) -> pd.DataFrame:
    """Binary gene-gene relation: cosine of the two gene embeddings strictly above ``threshold``.

    GeneCompass methods, "GRN inference": cosine similarity of gene
    embeddings, "threshold 0.4 ... If the cosine similarity was above the
    threshold, there existed a relationship between the pair of genes."
    Returns a boolean genes × genes frame over the ``genes`` that have a
    vector (in ``genes`` order); genes without a vector are absent, which
    :func:`combine_with_prior` reads as "no prior knowledge".
    """
    cosine, has = cosine_matrix(vectors, genes)
    covered = [str(gene) for gene, ok in zip(genes, has) if ok]
    related = cosine[np.ix_(has, has)] > threshold
    np.fill_diagonal(related, False)
    return pd.DataFrame(related, index=covered, columns=covered)


def combine_with_prior(edges: pd.DataFrame, prior: pd.DataFrame) -> pd.DataFrame:
    """DeepSEM's ranked edges "updated" by a binary gene-gene prior (GeneCompass).

    The methods only say the gene relationships from the embeddings were
    applied "to update DeepSEM and then drew final GRNs", and the results
    that the binary adjacency "was then used to update the output GRNs from
    DeepSEM". Our reading, which matches what the GeneCompass release does
    to DeepSEM's final W (``newextractEdgesFromMatrix`` in its
    ``grn_inference/DeepSEM-master/utils.py``): the prior acts as a filter on
    DeepSEM's edge list.

    - An edge whose two genes both have a prior entry (an embedding) is kept
      when the prior relates them, removed when it does not.
    - An edge with a gene the prior does not cover is kept unchanged.
    - Kept edges keep DeepSEM's score and order; removed edges leave the
      table, so :func:`genecompass.tasks.grn.beeline.evaluate_edges` ranks them
      with the unscored pairs, below every kept edge (BEELINE's weight 0).

    The prior is read as ``prior.loc[source, target]`` (the cosine prior is
    symmetric, so direction does not matter). The release also lists prior
    pairs whose source is not a TF with weight 0; those fall outside the
    TF→gene candidate set and are not added here.
    """
    edges = check_edges(edges)
    if not isinstance(prior, pd.DataFrame) or list(prior.index) != list(prior.columns):
        raise InputError(None, "prior", "expected a square gene × gene frame with the same genes on both axes",
                         "build it with embedding_prior")
    matrix = prior.to_numpy()
    if matrix.dtype != bool:
        if not np.isin(matrix, (0, 1)).all():
            raise InputError(None, "prior", "values other than 0/1 (or False/True)", "binarise the prior first")
        matrix = matrix.astype(bool)
    position = {str(gene): i for i, gene in enumerate(prior.index)}
    src = np.fromiter((position.get(g, -1) for g in edges["source"]), dtype=np.int64, count=len(edges))
    tgt = np.fromiter((position.get(g, -1) for g in edges["target"]), dtype=np.int64, count=len(edges))
    covered = (src >= 0) & (tgt >= 0)
    keep = ~covered
    keep[covered] = matrix[src[covered], tgt[covered]]
    return rank_edges(edges[keep].reset_index(drop=True))
