"""Knowledge embeddings: gene2vec, family pairs, co-expression, assembly, evaluation."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from genecompass.errors import InputError
from genecompass.genes import strip_version
from genecompass.knowledge.assemble import (
    KINDS,
    assemble_knowledge,
    coverage_table,
    dictionary_checksum,
    load_knowledge,
    plot_coverage,
    save_knowledge,
)
from genecompass.knowledge.coexpression import (
    coexpressed_pairs,
    coexpression_from_h5ad,
    log_normalize,
    sample_cells,
)
from genecompass.knowledge.evaluate import coregulated_pairs, heldout_pair_auc, pair_auc
from genecompass.knowledge.gene2vec import (
    GeneVectors,
    family_pairs,
    grn_pairs,
    load_gene_vectors,
    save_gene_vectors,
    train_gene2vec,
)

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------
# gene2vec
# ---------------------------------------------------------------------------


def planted_clique_pairs(seed: int = 0, n_genes: int = 300, n_cliques: int = 5, clique_size: int = 12,
                         n_background: int = 600):
    """Clique pairs (the signal) and uniformly random background pairs (noise)."""
    rng = np.random.default_rng(seed)
    genes = np.array([f"G{i:04d}" for i in range(n_genes)], dtype=object)
    members = rng.permutation(n_genes)[: n_cliques * clique_size].reshape(n_cliques, clique_size)
    cliques = pd.DataFrame([(genes[a], genes[b]) for clique in members
                            for a, b in itertools.combinations(clique, 2)], columns=["gene_a", "gene_b"])
    background = rng.integers(0, n_genes, size=(n_background, 2))
    background = background[background[:, 0] != background[:, 1]]
    noise = pd.DataFrame({"gene_a": genes[background[:, 0]], "gene_b": genes[background[:, 1]]})
    return cliques, noise


def test_gene2vec_is_deterministic_and_saves_without_pickle(tmp_path):
    cliques, noise = planted_clique_pairs()
    pairs = pd.concat([cliques, noise], ignore_index=True)
    first = train_gene2vec(pairs, dim=16, seed=3, epochs=5)
    second = train_gene2vec(pairs.to_numpy(), dim=16, seed=3, epochs=5)  # array input
    other_seed = train_gene2vec(pairs, dim=16, seed=4, epochs=5)
    assert first.ids == second.ids
    assert np.array_equal(first.vectors, second.vectors)
    assert not np.array_equal(first.vectors, other_seed.vectors[other_seed.rows(first.ids)])
    assert first.vectors.dtype == np.float32 and first.vectors.shape == (len(first.ids), 16)
    assert set(first.ids) == set(pairs["gene_a"]) | set(pairs["gene_b"])

    path = tmp_path / "vectors.safetensors"
    save_gene_vectors(first, path)
    loaded = load_gene_vectors(path)
    assert loaded.ids == first.ids and np.array_equal(loaded.vectors, first.vectors)
    assert loaded.metadata["epochs"] == "5"
    with pytest.raises(InputError, match="gene-vector"):
        from safetensors.numpy import save_file
        save_file({"other": np.zeros(2, dtype=np.float32)}, str(tmp_path / "bad.safetensors"))
        load_gene_vectors(tmp_path / "bad.safetensors")


_TRAIN_SCRIPT = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from genecompass.knowledge.gene2vec import train_gene2vec, save_gene_vectors
rng = np.random.default_rng(0)
genes = np.array([f"ENSG{i:011d}" for i in range(80)], dtype=object)
pairs = genes[rng.integers(0, 80, size=(400, 2))]
save_gene_vectors(train_gene2vec(pairs, dim=8, seed=11, epochs=3), sys.argv[2])
"""


def test_gene2vec_does_not_depend_on_pythonhashseed(tmp_path):
    outputs = []
    for hash_seed in ("1", "977"):
        out = tmp_path / f"v{hash_seed}.safetensors"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", _TRAIN_SCRIPT, str(ROOT), str(out)], env=env, check=True,
                       capture_output=True, timeout=120)
        outputs.append(load_gene_vectors(out))
    assert outputs[0].ids == outputs[1].ids
    assert np.array_equal(outputs[0].vectors, outputs[1].vectors)


def test_gene2vec_heldout_auc_on_planted_cliques():
    cliques, noise = planted_clique_pairs()

    def train(train_pairs):  # the random background is always in the training data
        return train_gene2vec(pd.concat([train_pairs, noise]), dim=32, seed=1, epochs=50)

    result = heldout_pair_auc(cliques, train, held_out_fraction=0.2, seed=0)
    assert result["n_heldout_pairs"] == round(0.2 * len(cliques))
    assert result["n_positive_scored"] == result["n_heldout_pairs"]  # clique members stay in the vocabulary
    assert result["n_negative"] == result["n_positive_scored"]
    assert result["auc"] > 0.8, result
    assert result["mean_cosine_positive"] > result["mean_cosine_negative"]
    # Without the clique pairs the held-out pairs are no more similar than random ones.
    shuffled = heldout_pair_auc(cliques, lambda p: train_gene2vec(noise, dim=32, seed=1, epochs=50),
                                held_out_fraction=0.2, seed=0)
    assert 0.3 < shuffled["auc"] < 0.7


def test_pair_auc_scores_given_embedding():
    genes = [f"g{i}" for i in range(40)]
    vectors = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    vectors[1] = vectors[0] + 0.01  # g0-g1 and g2-g3 nearly identical
    vectors[3] = vectors[2] + 0.01
    embedding = GeneVectors(genes, vectors)
    result = pair_auc(embedding, [("g0", "g1"), ("g2", "g3"), ("g0", "unknown")], seed=0)
    assert result["n_positive_scored"] == 2 and result["n_positive_unscorable"] == 1
    assert result["n_negative"] == 2
    assert result["auc"] == 1.0


# ---------------------------------------------------------------------------
# Pair lists
# ---------------------------------------------------------------------------


def test_grn_pairs_from_several_networks():
    first = pd.DataFrame({"source_id": ["T1", "T1", "T2", None], "target_id": ["A", "T1", "B", "C"],
                          "sign": [1, 1, -1, 1]})
    second = pd.DataFrame({"source_id": ["T1"], "target_id": ["A"], "sign": [1]})
    pairs = grn_pairs([first, second])
    # self-loop and unmapped source dropped; an edge of two networks counts twice
    assert pairs.values.tolist() == [["T1", "A"], ["T2", "B"], ["T1", "A"]]
    assert grn_pairs(first).values.tolist() == [["T1", "A"], ["T2", "B"]]
    with pytest.raises(InputError, match="target_id"):
        grn_pairs(pd.DataFrame({"source_id": ["T1"], "target": ["A"]}))


def test_family_pairs_small_groups_give_all_pairs():
    groups = pd.DataFrame({"ensembl_id": ["A", "B", "C", "D", "E", "A"],
                           "group_id": ["1", "1", "1|2", "2", "3", "1"]})  # HGNC '|' layout, a duplicate row
    pairs = family_pairs(groups, max_pairs_per_group=2000, seed=0)
    assert sorted(map(tuple, pairs[["gene_a", "gene_b"]].values)) == [
        ("A", "B"), ("A", "C"), ("B", "C"), ("C", "D")]  # group 3 has one gene: no pair


def test_family_pairs_cap_keeps_every_member():
    n, cap = 300, 2000  # 44,850 pairs uncapped
    big = pd.DataFrame({"ensembl_id": [f"G{i:03d}" for i in range(n)], "group_id": "big"})
    pairs = family_pairs(big, max_pairs_per_group=cap, seed=5)
    k = cap // n
    assert len(pairs) <= cap
    assert len(pairs) >= n * k / 2
    per_gene = pd.concat([pairs["gene_a"], pairs["gene_b"]]).value_counts()
    assert len(per_gene) == n and per_gene.min() >= k  # every member keeps >= k partners
    assert (pairs["gene_a"] < pairs["gene_b"]).all() and not pairs.duplicated(["gene_a", "gene_b"]).any()
    assert pairs.equals(family_pairs(big, max_pairs_per_group=cap, seed=5))
    assert not pairs.equals(family_pairs(big, max_pairs_per_group=cap, seed=6))

    # A group with more members than the cap: one partner each, nobody dropped.
    huge = pd.DataFrame({"ensembl_id": [f"H{i:04d}" for i in range(500)], "group_id": "huge"})
    pairs = family_pairs(huge, max_pairs_per_group=100, seed=0)
    assert 250 <= len(pairs) <= 500
    assert pd.concat([pairs["gene_a"], pairs["gene_b"]]).nunique() == 500


def test_coregulated_pairs_are_targets_sharing_a_tf():
    edges = pd.DataFrame({"gene_a": ["T1", "T1", "T1", "T2"], "gene_b": ["A", "B", "C", "A"]})
    assert sorted(map(tuple, coregulated_pairs(edges).values)) == [("A", "B"), ("A", "C"), ("B", "C")]


# ---------------------------------------------------------------------------
# Co-expression
# ---------------------------------------------------------------------------


def reference_coexpression(counts: np.ndarray, min_cells: int):
    """Per-pair loop: PCC of normalised values over cells where both counts >= 1."""
    values = log_normalize(counts).toarray()
    result = {}
    for i, j in itertools.combinations(range(counts.shape[1]), 2):
        both = (counts[:, i] >= 1) & (counts[:, j] >= 1)
        if both.sum() < min_cells:
            continue
        x, y = values[both, i], values[both, j]
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        result[(i, j)] = (float(np.corrcoef(x, y)[0, 1]), int(both.sum()))
    return result


def random_counts(seed: int = 0, n_cells: int = 160, n_genes: int = 45) -> np.ndarray:
    rng = np.random.default_rng(seed)
    detection = rng.uniform(0.03, 0.9, n_genes)  # some genes too rare to pass min_cells
    counts = rng.poisson(rng.uniform(0.5, 6, n_genes), size=(n_cells, n_genes)) + 1
    counts = counts * (rng.random((n_cells, n_genes)) < detection)
    # Two genes that agree on being zero (high full-matrix PCC) but are
    # independent where both are expressed.
    on = rng.random(n_cells) < 0.5
    counts[:, 0] = on * rng.integers(1, 30, n_cells)
    counts[:, 1] = on * rng.integers(1, 30, n_cells)
    # A truly co-expressed pair.
    counts[:, 2] = on * rng.integers(1, 30, n_cells)
    counts[:, 3] = counts[:, 2] * 2 + on * rng.integers(0, 2, n_cells)
    return counts.astype(np.int32)


@pytest.mark.parametrize("block_size", [7, 2048])
def test_coexpression_matches_per_pair_reference(block_size):
    counts = random_counts()
    genes = [f"g{i}" for i in range(counts.shape[1])]
    min_cells = 20
    reference = reference_coexpression(counts, min_cells)
    pairs, stats = coexpressed_pairs(sp.csr_matrix(counts), genes, threshold=-2.0, min_cells=min_cells,
                                     block_size=block_size)
    found = {(genes.index(a), genes.index(b)): (p, n)
             for a, b, p, n in pairs[["gene_a", "gene_b", "pcc", "n_cells"]].itertuples(index=False)}
    assert found.keys() == reference.keys()
    for key, (pcc, n) in reference.items():
        assert abs(found[key][0] - pcc) < 1e-6 and found[key][1] == n
    assert stats["n_pairs_evaluated"] == len(reference)
    assert stats["n_genes_kept"] < counts.shape[1]  # rare genes skipped up front
    assert stats["n_pairs_candidate"] == stats["n_genes_kept"] * (stats["n_genes_kept"] - 1) // 2
    assert stats["seconds"] >= 0

    # Thresholded output = reference filtered; the zero-agreement pair is not
    # co-expressed although its full-matrix PCC is high.
    selected, _ = coexpressed_pairs(sp.csr_matrix(counts), genes, threshold=0.8, min_cells=min_cells,
                                    block_size=block_size)
    expected = {k for k, (p, _) in reference.items() if p > 0.8}
    assert {(genes.index(a), genes.index(b)) for a, b in zip(selected["gene_a"], selected["gene_b"])} == expected
    assert (2, 3) in expected and (0, 1) not in expected
    assert np.corrcoef(counts[:, 0], counts[:, 1])[0, 1] > 0.5


def test_coexpression_min_cells_rule():
    counts = random_counts(seed=1)
    genes = [f"g{i}" for i in range(counts.shape[1])]
    loose, _ = coexpressed_pairs(counts, genes, threshold=-2.0, min_cells=5)
    strict, stats = coexpressed_pairs(counts, genes, threshold=-2.0, min_cells=60)
    assert strict["n_cells"].min() >= 60 and loose["n_cells"].min() < 60
    assert stats["n_pairs_evaluated"] == len(reference_coexpression(counts, 60))
    with pytest.raises(InputError, match="min_cells"):
        coexpressed_pairs(counts, genes, min_cells=1)


def test_sample_cells_is_uniform_seeded_and_complete_when_small():
    assert np.array_equal(sample_cells(100, 3000, seed=0), np.arange(100))
    drawn = sample_cells(10_000, 3000, seed=0)
    assert len(drawn) == 3000 == len(np.unique(drawn)) and np.array_equal(drawn, np.sort(drawn))
    assert np.array_equal(drawn, sample_cells(10_000, 3000, seed=0))
    assert not np.array_equal(drawn, sample_cells(10_000, 3000, seed=1))


def test_coexpression_from_h5ad(tmp_path):
    import anndata as ad

    counts = random_counts(seed=2, n_cells=200, n_genes=20)
    adata = ad.AnnData(X=sp.csr_matrix(counts),
                       var=pd.DataFrame(index=[f"ENSG{i:011d}.{i % 3 + 1}" for i in range(20)]))
    adata.uns["species"] = "human"
    adata.uns["sample"] = "s1"
    path = tmp_path / "s1.h5ad"
    adata.write_h5ad(path)
    pairs, stats = coexpression_from_h5ad([path], species="human", threshold=0.5, min_cells=20, max_cells=150)
    assert len(stats) == 1 and stats.loc[0, "n_cells"] == 150 and stats.loc[0, "n_cells_total"] == 200
    assert {"seconds", "n_pairs_evaluated", "n_pairs_selected"} <= set(stats.columns)
    assert len(pairs) == stats.loc[0, "n_pairs_selected"] > 0
    assert pairs["gene_a"].str.fullmatch(r"ENSG\d{11}").all() and (pairs["sample"] == "s1").all()
    with pytest.raises(InputError, match="uns.species"):
        coexpression_from_h5ad([path], species="mouse")
    # A matrix smaller than min_matrix_cells contributes no pairs (but is reported).
    few, few_stats = coexpression_from_h5ad([path], threshold=0.5, min_cells=20, min_matrix_cells=201)
    assert len(few) == 0 and few_stats.loc[0, "n_cells_total"] == 200
    kept, _ = coexpression_from_h5ad([path], threshold=0.5, min_cells=20, max_cells=150, min_matrix_cells=200)
    assert len(kept) == len(pairs)


# ---------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------


def toy_dictionary() -> pd.DataFrame:
    rows = [
        ("<pad>", "special", "", ""), ("<mask>", "special", "", ""),
        ("<human>", "special", "", ""), ("<mouse>", "special", "", ""),
        ("H1", "homologous", "H1", "M1"),         # human vector
        ("H2", "homologous", "H2", "M2"),         # no human vector: falls back to mouse
        ("H3", "homologous", "H3", "M3a;M3b"),    # one2many: M3a has none, M3b has one
        ("H7", "homologous", "H7", "M7"),         # nothing at all
        ("H4", "human_only", "H4", ""),
        ("H5", "human_only", "H5", ""),           # no vector
        ("M6", "mouse_only", "", "M6"),
    ]
    table = pd.DataFrame(rows, columns=["token", "token_class", "human_ensembl_id", "mouse_ensembl_id"])
    table.insert(0, "token_id", range(len(table)))
    for column in ("human_symbol", "mouse_symbol", "homology_type"):
        table[column] = ""
    return table


def vectors_for(ids: list[str], dim: int, offset: float) -> GeneVectors:
    return GeneVectors(ids, np.arange(len(ids) * dim, dtype=np.float32).reshape(len(ids), dim) + offset)


def test_assembly_rules_and_round_trip(tmp_path):
    dictionary = toy_dictionary()
    dim = 4
    human = vectors_for(["H1", "H3x", "H4"], dim, 0.0)
    mouse = vectors_for(["M1", "M2", "M3b", "M6", "Mzzz"], dim, 1000.0)
    embeddings = {"family": {"human": human, "mouse": mouse}, "grn": {"mouse": mouse}}
    knowledge = assemble_knowledge(dictionary, embeddings, dim)
    # Every kind is stored in canonical order; absent kinds are empty.
    assert knowledge.kinds == ["grn", "promoter", "family", "coexpression"]
    assert not knowledge.masks["promoter"].any() and not knowledge.matrices["coexpression"].any()
    family, mask = knowledge.matrices["family"], knowledge.masks["family"]
    token = dict(zip(dictionary["token"], dictionary["token_id"]))

    def vec(vectors, gene):
        return vectors.vectors[vectors.row(gene)]

    assert family.shape == (len(dictionary), dim) and family.dtype == np.float32
    assert np.array_equal(family[token["H1"]], vec(human, "H1"))     # homologous takes human, not M1
    assert np.array_equal(family[token["H2"]], vec(mouse, "M2"))     # fallback to mouse
    assert np.array_equal(family[token["H3"]], vec(mouse, "M3b"))    # first one2many ID with a vector
    assert np.array_equal(family[token["H4"]], vec(human, "H4"))     # human-only
    assert np.array_equal(family[token["M6"]], vec(mouse, "M6"))     # mouse-only
    for name in ("<pad>", "<mask>", "<human>", "<mouse>", "H7", "H5"):
        assert not mask[token[name]] and not family[token[name]].any()
    assert mask.tolist() == [False] * 4 + [True, True, True, False, True, False, True]
    assert knowledge.sources["family"][token["H1"]] == 1 and knowledge.sources["family"][token["H2"]] == 2
    # grn has mouse vectors only: homologous tokens use them, human-only tokens stay empty
    assert np.array_equal(knowledge.matrices["grn"][token["H1"]], vec(mouse, "M1"))
    assert not knowledge.masks["grn"][token["H4"]]

    coverage = coverage_table(knowledge, dictionary).set_index(["kind", "token_class"])
    assert coverage.loc[("family", "homologous"), ["n_tokens", "n_covered"]].tolist() == [4, 3]
    assert coverage.loc[("family", "homologous"), ["n_from_human", "n_from_mouse"]].tolist() == [1, 2]
    assert coverage.loc[("family", "all"), "n_tokens"] == 7
    assert coverage.loc[("family", "all"), "fraction"] == pytest.approx(5 / 7)
    assert coverage.loc[("grn", "human_only"), "n_covered"] == 0

    path = tmp_path / "knowledge.safetensors"
    save_knowledge(knowledge, path)
    loaded = load_knowledge(path, dictionary=dictionary)
    assert loaded.kinds == knowledge.kinds and loaded.dim == dim
    assert np.array_equal(loaded.token_ids, np.arange(len(dictionary)))
    for kind in knowledge.kinds:
        assert np.array_equal(loaded.matrices[kind], knowledge.matrices[kind])
        assert loaded.masks[kind].dtype == bool and np.array_equal(loaded.masks[kind], knowledge.masks[kind])
    from safetensors import safe_open
    with safe_open(str(path), framework="numpy") as handle:
        assert {"grn", "grn_mask", "family", "family_mask", "token_ids"} <= set(handle.keys())
        meta = handle.metadata()
    assert json.loads(meta["kinds"]) == list(knowledge.kinds) and meta["dim"] == "4"
    assert meta["dictionary_sha256"] == dictionary_checksum(dictionary)

    changed = dictionary.copy()
    changed.loc[token["H2"], "mouse_ensembl_id"] = "M2b"
    with pytest.raises(InputError, match="another token dictionary"):
        load_knowledge(path, dictionary=changed)

    figure = tmp_path / "coverage.png"
    plot_coverage(coverage_table(knowledge, dictionary), figure)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_assembly_rejects_wrong_dim_and_kind():
    dictionary = toy_dictionary()
    with pytest.raises(InputError, match="embedding size 4"):
        assemble_knowledge(dictionary, {"grn": {"human": vectors_for(["H1"], 4, 0)}}, dim=8)
    with pytest.raises(InputError, match="unknown kinds"):
        assemble_knowledge(dictionary, {"pathways": {"human": vectors_for(["H1"], 4, 0)}}, dim=4)
    assert set(KINDS) == {"grn", "promoter", "family", "coexpression"}


# ---------------------------------------------------------------------------
# The synthetic demo world
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_world(tmp_path_factory) -> Path:
    from genecompass.simulate.world import simulate_world

    root = tmp_path_factory.mktemp("world")
    simulate_world(root, 42)
    return root


def symbol_to_ensembl(world: Path) -> pd.Series:
    genes = pd.read_csv(world / "references" / "human_genes.tsv", sep="\t", dtype=str)
    unique = genes[~genes["symbol"].duplicated(keep=False)]  # an ambiguous symbol maps to nothing
    return unique.set_index("symbol")["ensembl_id"]


def test_demo_world_grn_and_family_embeddings(demo_world):
    to_id = symbol_to_ensembl(demo_world)
    grn = pd.read_csv(demo_world / "references" / "grn_human.tsv", sep="\t", dtype=str)
    network = pd.DataFrame({"source_id": grn["source"].map(to_id), "target_id": grn["target"].map(to_id),
                            "sign": grn["mode"]})
    edges = grn_pairs(network)
    assert len(edges) > 500

    hgnc = pd.read_csv(demo_world / "references" / "hgnc_gene_groups.tsv", sep="\t", dtype=str,
                       keep_default_na=False)
    groups = hgnc.rename(columns={"ensembl_gene_id": "ensembl_id", "gene_group_id": "group_id"})
    families = family_pairs(groups, max_pairs_per_group=2000, seed=0)
    assert len(families) > 500

    def train(pairs):
        return train_gene2vec(pairs, dim=32, seed=0, epochs=100)

    family_auc = heldout_pair_auc(families, train, held_out_fraction=0.1, seed=0)
    assert family_auc["auc"] > 0.8, family_auc

    # The demo GRN's targets are drawn at random per TF, so a hidden TF→target
    # edge cannot be inferred from the other edges. What gene2vec learns from
    # TF→target pairs is co-regulation: targets sharing a TF get similar vectors.
    grn_vectors = train(edges)
    coregulation = pair_auc(grn_vectors, coregulated_pairs(edges), seed=0)
    assert coregulation["auc"] > 0.8, coregulation
    assert pair_auc(grn_vectors, coregulated_pairs(edges), seed=0, negatives="degree")["auc"] > 0.8


def test_demo_world_coexpression_finds_planted_modules(demo_world):
    import anndata as ad

    adata = ad.read_h5ad(demo_world / "counts" / "human_s1.h5ad")
    adata = adata[adata.obs["planted_quality"] == "ok"]  # stand-in for QC
    genes = list(strip_version(list(adata.var_names)))
    modules = pd.read_csv(demo_world / "truth" / "coexpression_modules.tsv", sep="\t")
    modules = modules[modules["species"] == "human"]
    module_of = modules.groupby("ensembl_id")["module"].agg(frozenset).to_dict()

    def same_module(a, b) -> np.ndarray:
        return np.array([bool(module_of.get(x, frozenset()) & module_of.get(y, frozenset()))
                         for x, y in zip(a, b)])

    rng = np.random.default_rng(0)
    random_a, random_b = rng.choice(genes, 20000), rng.choice(genes, 20000)
    keep = random_a != random_b
    base_rate = same_module(random_a[keep], random_b[keep]).mean()

    pairs, stats = coexpressed_pairs(adata.X, genes, threshold=0.5, min_cells=20, values="log_counts")
    assert stats["n_pairs_selected"] == len(pairs) > 100
    assert same_module(pairs["gene_a"], pairs["gene_b"]).mean() > 3 * base_rate
