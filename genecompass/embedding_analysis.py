"""Do gene embeddings keep cross-species homology? (paper Fig. 2a and Supp. Fig. S2d).

Homologous genes share one token, so the question is asked of contextual
embeddings (``genecompass.embed``): for each homologous token seen in both
species, the cosine between its human and its mouse vector ("homologous"),
against the cosine between a human vector and the mouse vector of a different
token ("non-homologous", random pairs, seeded). Within a cell, the mean cosine
between the outputs of different genes tells whether gene embeddings stay
distinguishable (near zero) or collapse (near one). Every comparison is made
for each model variant (pretrained with and without knowledge, untrained).

Transformer outputs are anisotropic (they share a large common component),
which pushes every raw cosine towards one; the ``*_centred`` comparisons
repeat the pair cosines after subtracting each species' mean gene vector.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def cross_species_similarity(keys: pd.DataFrame, vectors: np.ndarray, n_non_homologous: int = 2000,
                             seed: int = 0) -> pd.DataFrame:
    """Cosines of homologous and random non-homologous human–mouse gene pairs.

    ``keys`` has ``species`` and ``token_id`` (and ``token_class``) per row of
    ``vectors``. Homologous pairs: tokens of class ``homologous`` present in
    both species. Non-homologous pairs: a human token and a different mouse
    token, both drawn from the homologous tokens so that the two sets differ
    only in the pairing. Returns ``kind, human_token, mouse_token, cosine,
    cosine_centred`` (the latter after subtracting each species' mean vector).
    """
    human = keys["species"].to_numpy() == "human"
    mouse = keys["species"].to_numpy() == "mouse"
    homologous = keys["token_class"].to_numpy() == "homologous" if "token_class" in keys else np.ones(len(keys),
                                                                                                        bool)
    tokens = keys["token_id"].to_numpy()
    human_rows = pd.Series(np.flatnonzero(human & homologous), index=tokens[human & homologous])
    mouse_rows = pd.Series(np.flatnonzero(mouse & homologous), index=tokens[mouse & homologous])
    shared = np.intersect1d(human_rows.index.to_numpy(), mouse_rows.index.to_numpy())
    if len(shared) < 2:
        raise ValueError(f"only {len(shared)} homologous tokens have embeddings in both species; the analysis "
                         f"needs human and mouse cells expressing shared homologous genes")
    vectors = np.asarray(vectors, dtype=np.float64)
    unit = _unit(vectors)
    centred = vectors.copy()
    for rows in (human, mouse):
        centred[rows] -= vectors[rows].mean(axis=0)
    unit_centred = _unit(centred)
    h = human_rows.loc[shared].to_numpy()
    m = mouse_rows.loc[shared].to_numpy()
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(shared), size=n_non_homologous)
    shift = rng.integers(1, len(shared), size=n_non_homologous)  # never the same token
    j = (i + shift) % len(shared)

    def cosines(a, b):
        return (unit[a] * unit[b]).sum(axis=1), (unit_centred[a] * unit_centred[b]).sum(axis=1)

    homolog_cos, homolog_centred = cosines(h, m)
    non_cos, non_centred = cosines(h[i], m[j])
    return pd.concat([
        pd.DataFrame({"kind": "homologous", "human_token": shared, "mouse_token": shared, "cosine": homolog_cos,
                      "cosine_centred": homolog_centred}),
        pd.DataFrame({"kind": "non_homologous", "human_token": shared[i], "mouse_token": shared[j],
                      "cosine": non_cos, "cosine_centred": non_centred}),
    ], ignore_index=True)


def _describe(values: np.ndarray) -> dict:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return {"n": 0, "mean": np.nan, "median": np.nan, "sd": np.nan}
    return {"n": int(len(values)), "mean": float(values.mean()), "median": float(np.median(values)),
            "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


def summarize(pairs_by_variant: dict[str, pd.DataFrame],
              within_by_variant: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """One row per variant and comparison: n, mean, median, sd; homologous rows carry the
    one-sided Mann–Whitney p-value (homologous > non-homologous) and the AUROC of that separation."""
    from scipy.stats import mannwhitneyu

    rows = []
    for variant, pairs in pairs_by_variant.items():
        for column, suffix in (("cosine", ""), ("cosine_centred", "_centred")):
            if column not in pairs:
                continue
            homolog = pairs.loc[pairs["kind"] == "homologous", column].to_numpy()
            non = pairs.loc[pairs["kind"] == "non_homologous", column].to_numpy()
            test = mannwhitneyu(homolog, non, alternative="greater")
            auroc = test.statistic / (len(homolog) * len(non))
            rows.append({"variant": variant, "comparison": f"homologous{suffix}", **_describe(homolog),
                         "p_greater_than_non_homologous": float(test.pvalue),
                         "auroc_vs_non_homologous": float(auroc)})
            rows.append({"variant": variant, "comparison": f"non_homologous{suffix}", **_describe(non)})
        for species, values in sorted(within_by_variant.get(variant, {}).items()):
            rows.append({"variant": variant, "comparison": f"within_cell_{species}", **_describe(values)})
    return pd.DataFrame(rows)


def plot_similarity(pairs_by_variant: dict[str, pd.DataFrame], within_by_variant: dict[str, dict[str, np.ndarray]],
                    path) -> None:
    """Box plots: homologous vs non-homologous cosine per variant (left), within-cell cosine (right)."""
    from genecompass.plotting import plt, save_figure


    variants = list(pairs_by_variant)
    fig, axes = plt.subplots(1, 3, figsize=(6 + 3.2 * len(variants), 4.2))
    for axis, column, title in ((axes[0], "cosine", "raw"), (axes[1], "cosine_centred", "centred")):
        data, labels, colours = [], [], []
        for variant in variants:
            pairs = pairs_by_variant[variant]
            for kind, colour in (("homologous", "tab:red"), ("non_homologous", "tab:grey")):
                data.append(pairs.loc[pairs["kind"] == kind, column].to_numpy())
                labels.append(f"{variant}\n{kind.replace('_', '-')}")
                colours.append(colour)
        boxes = axis.boxplot(data, showfliers=False, patch_artist=True)
        for patch, colour in zip(boxes["boxes"], colours, strict=True):
            patch.set_facecolor(colour)
            patch.set_alpha(0.5)
        axis.set_xticks(range(1, len(labels) + 1), labels, rotation=60, ha="right", fontsize=7)
        axis.set_ylabel(f"cosine, human vs mouse gene ({title})")
        axis.axhline(0, color="black", lw=0.5)
    data, labels = [], []
    for variant in variants:
        for species, values in sorted(within_by_variant.get(variant, {}).items()):
            data.append(values[np.isfinite(values)])
            labels.append(f"{variant}\n{species}")
    if data:
        axes[2].boxplot(data, showfliers=False)
        axes[2].set_xticks(range(1, len(labels) + 1), labels, rotation=60, ha="right", fontsize=7)
    axes[2].set_ylabel("mean cosine between genes of a cell")
    axes[2].axhline(0, color="black", lw=0.5)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


__all__ = ["cross_species_similarity", "plot_cell_embeddings", "plot_similarity", "summarize"]


def analyse(variants: list[str], contextual_files: dict[str, str], sample_files: dict[str, list[str]],
            n_pairs: int, seed: int, out_summary, out_pairs, out_figure) -> pd.DataFrame:
    """Rule ``embedding_analysis``: for each variant, the homologous vs non-homologous cosines of its
    contextual gene table and the within-cell cosines of its samples; the summary, the pairs, the figure."""
    from genecompass.embedding_files import load_sample_embeddings, read_gene_table
    from genecompass.utils import atomic_output

    pairs, within = {}, {}
    for variant in variants:
        keys, vectors = read_gene_table(contextual_files[variant])
        pairs[variant] = cross_species_similarity(keys, vectors, n_pairs, seed)
        by_species: dict[str, list[np.ndarray]] = {}
        for path in sample_files[variant]:
            result, species = load_sample_embeddings(path)
            by_species.setdefault(species, []).append(result.within_cell_cosine)
        within[variant] = {species: np.concatenate(parts) for species, parts in by_species.items()}
    summary = summarize(pairs, within)
    print(summary.to_string(index=False))
    with atomic_output(out_summary) as tmp:
        summary.to_csv(tmp, sep="\t", index=False)
    table = pd.concat([frame.assign(variant=variant) for variant, frame in pairs.items()], ignore_index=True)
    with atomic_output(out_pairs) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    plot_similarity(pairs, within, out_figure)
    return summary


def plot_cell_embeddings(h5ad_files: list[str], path, color_by: str | None = None, max_cells: int = 5000,
                         seed: int = 0) -> dict:
    """The cells' GeneCompass embeddings (``obsm["X_genecompass"]``) on their first two principal
    components, coloured by sample and, when ``color_by`` names an obs column, by it. Returns the
    cells drawn and the variance the two components explain."""
    import anndata as ad
    from sklearn.decomposition import PCA

    from genecompass.embedding_files import EMBEDDING_KEY
    from genecompass.plotting import plt, save_figure

    frames, vectors = [], []
    for file in h5ad_files:
        adata = ad.read_h5ad(file)
        keep = np.isfinite(adata.obsm[EMBEDDING_KEY]).all(axis=1)   # cells with no known gene are NaN
        obs = pd.DataFrame({"sample": str(adata.uns.get("sample", file))}, index=adata.obs_names[keep])
        if color_by is not None:   # a sample without the column (e.g. a 10x file) is drawn as "unlabelled"
            labels = adata.obs[color_by].astype(str).to_numpy() if color_by in adata.obs else \
                np.full(adata.n_obs, "unlabelled", dtype=object)
            obs[color_by] = labels[keep]
        frames.append(obs)
        vectors.append(np.asarray(adata.obsm[EMBEDDING_KEY])[keep])
    obs, x = pd.concat(frames), np.concatenate(vectors)
    if color_by is not None and (obs[color_by] == "unlabelled").all():
        raise ValueError(f"no sample has the obs column '{color_by}' (embeddings.color_by) to colour the cells by; "
                         "set embeddings.color_by to a column of your samples, or null")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(x), size=min(max_cells, len(x)), replace=False))
    pca = PCA(n_components=2, random_state=seed).fit(x[chosen])
    xy = pca.transform(x[chosen])
    columns = ["sample", *([color_by] if color_by else [])]
    fig, axes = plt.subplots(1, len(columns), figsize=(5.2 * len(columns), 4.4), squeeze=False)
    for axis, column in zip(axes[0], columns):
        labels = obs[column].to_numpy()[chosen]
        for label in sorted(set(labels)):
            at = labels == label
            axis.scatter(xy[at, 0], xy[at, 1], s=4, alpha=0.6, label=label)
        axis.set_title(f"GeneCompass cell embeddings by {column}", fontsize=9)
        axis.set_xlabel(f"PC1 ({pca.explained_variance_ratio_[0]:.0%})")
        axis.set_ylabel(f"PC2 ({pca.explained_variance_ratio_[1]:.0%})")
        axis.legend(fontsize=6, markerscale=2, loc="best")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return {"cells": int(len(chosen)), "explained_variance": [float(v) for v in pca.explained_variance_ratio_]}
