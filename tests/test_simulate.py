"""Tests of the synthetic demo world (genecompass.simulate.world).

Everything is checked from the written files with the published readers
(pandas, anndata, scanpy) and computed independently of the simulator's code.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import re
import time
import warnings
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from genecompass.simulate.world import WorldParams, build_world, simulate_world

sc = pytest.importorskip("scanpy")

SEED = 11
EXPECTED_FILES = {
    "references/human_genes.tsv", "references/mouse_genes.tsv",
    "references/orthologs_biomart.csv", "references/grn_human.tsv", "references/grn_mouse.tsv",
    "references/hgnc_gene_groups.tsv", "references/promoters_human.fa",
    "references/promoters_mouse.fa",
    "counts/human_s1.h5ad", "counts/human_s2.h5ad", "counts/human_s3.h5", "counts/mouse_s1.h5ad",
    "counts/mouse_s2/matrix.mtx.gz", "counts/mouse_s2/features.tsv.gz",
    "counts/mouse_s2/barcodes.tsv.gz",
    "truth/cells.tsv", "truth/cell_types.tsv", "truth/motifs.tsv", "truth/coexpression_modules.tsv",
    "truth/network_effects.tsv", "truth/samples.tsv", "truth/tfs.tsv", "truth/params.json",
}
ORTHOLOG_HEADER = ('Gene stable ID,Gene name,Mouse gene name,Mouse gene stable ID,Mouse homology type,'
                   '"Mouse orthology confidence [0 low, 1 high]",Mouse Gene-order conservation score')
SAMPLES = ("human_s1", "human_s2", "human_s3", "mouse_s1", "mouse_s2")


# ---------------------------------------------------------------------------
# fixtures and independent helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world_a")
    start = time.perf_counter()
    paths = simulate_world(out, SEED)
    return {"dir": out, "paths": paths, "seconds": time.perf_counter() - start}


@pytest.fixture(scope="module")
def genes(world):
    d = world["dir"] / "references"
    return {s: pd.read_csv(d / f"{s}_genes.tsv", sep="\t") for s in ("human", "mouse")}


@pytest.fixture(scope="module")
def cells(world):
    return pd.read_csv(world["dir"] / "truth" / "cells.tsv", sep="\t")


def _sha256_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _read_sample(world_dir: Path, sample: str) -> ad.AnnData:
    """Read one sample with the published reader, as later stages will."""
    path = world_dir / "counts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scanpy warns about the duplicated symbol
        if sample == "human_s3":
            return sc.read_10x_h5(path / "human_s3.h5")
        if sample == "mouse_s2":
            return sc.read_10x_mtx(path / "mouse_s2")
        return ad.read_h5ad(path / f"{sample}.h5ad")


def _feature_annotation(adata: ad.AnnData, sample: str, genes) -> pd.DataFrame:
    """symbol, biotype (NaN if unknown) and ensembl_id per feature of a sample."""
    table = genes[sample.split("_")[0]]
    if "gene_ids" in adata.var:
        ids = adata.var["gene_ids"].astype(str).to_numpy()
    elif sample == "human_s2":  # symbol-keyed
        by_symbol = table.drop_duplicates("symbol").set_index("symbol")
        ann = by_symbol.reindex(adata.var_names)
        return pd.DataFrame({"symbol": adata.var_names, "biotype": ann["biotype"].to_numpy(),
                             "ensembl_id": ann["ensembl_id"].to_numpy()})
    else:
        ids = np.array([v.split(".")[0] for v in adata.var_names])
    ann = table.set_index("ensembl_id").loc[ids]
    return pd.DataFrame({"symbol": ann["symbol"].to_numpy(), "biotype": ann["biotype"].to_numpy(),
                         "ensembl_id": ids})


def _cell_metrics(adata: ad.AnnData, ann: pd.DataFrame) -> pd.DataFrame:
    X = sp.csr_matrix(adata.X)
    expressed = X > 0
    total = np.asarray(X.sum(axis=1)).ravel()
    mito = ann["symbol"].str.upper().str.startswith("MT-").to_numpy()
    coding = ann["biotype"].isin(["protein_coding", "miRNA"]).to_numpy()
    return pd.DataFrame({
        "n_genes": np.asarray(expressed.sum(axis=1)).ravel(),
        "n_coding": np.asarray(expressed[:, coding].sum(axis=1)).ravel(),
        "mito_fraction": np.asarray(X[:, mito].sum(axis=1)).ravel() / total,
    }, index=adata.obs_names)


def _read_fasta(path: Path) -> dict[str, tuple[str, str]]:
    records: dict[str, list] = {}
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            gid, symbol = line[1:].split()
            current = records.setdefault(gid, [symbol, []])
        else:
            current[1].append(line)
    return {gid: (symbol, "".join(parts)) for gid, (symbol, parts) in records.items()}


class _KmerIndex:
    """Sorted k-mer codes of many equal-length sequences, for fast site counting."""

    def __init__(self, codes: np.ndarray):
        n = len(codes)
        # sort (code, sequence) pairs packed into one integer: faster than argsort
        key = np.sort((codes * n + np.arange(n)[:, None]).ravel())
        self.sorted, self.rows, self.n = key // n, key % n, n

    @classmethod
    def for_lengths(cls, seqs: list[str], lengths) -> dict[int, _KmerIndex]:
        arr = np.frombuffer("".join(seqs).encode(), dtype=np.uint8).reshape(len(seqs), -1)
        lut = np.zeros(256, dtype=np.int64)
        lut[np.frombuffer(b"ACGT", dtype=np.uint8)] = np.arange(4)
        arr = lut[arr]
        indexes, codes = {}, np.zeros_like(arr)
        for k in range(1, max(lengths) + 1):  # codes of k-mers starting at each position
            codes = codes[:, : arr.shape[1] - k + 1] * 4 + arr[:, k - 1:]
            if k in lengths:
                indexes[k] = cls(codes)
        return indexes

    def count(self, motif: str, max_mismatches: int) -> np.ndarray:
        """Sites per sequence within ``max_mismatches`` (0 or 1) on either strand."""
        rc = motif.translate(str.maketrans("ACGT", "TGCA"))[::-1]
        variants = {motif, rc}
        if max_mismatches:
            for site in (motif, rc):
                for i in range(len(site)):
                    variants.update(site[:i] + b + site[i + 1:] for b in "ACGT")
        codes = np.array(sorted(int(v.translate(str.maketrans("ACGT", "0123")), 4) for v in variants))
        lo = np.searchsorted(self.sorted, codes, "left")
        hi = np.searchsorted(self.sorted, codes, "right")
        rows = np.concatenate([self.rows[a:b] for a, b in zip(lo, hi)] + [np.zeros(0, dtype=np.int64)])
        return np.bincount(rows, minlength=self.n)


def _lognorm(adata: ad.AnnData, ids) -> pd.DataFrame:
    X = sp.csr_matrix(adata.X, dtype=float)
    X = sp.diags(1e4 / np.asarray(X.sum(axis=1)).ravel()) @ X
    return pd.DataFrame(np.log1p(X.toarray()), index=adata.obs_names, columns=ids)


# ---------------------------------------------------------------------------
# determinism, API, file list
# ---------------------------------------------------------------------------


def test_simulation_is_fast_and_writes_expected_files(world):
    assert world["seconds"] < 15
    written = {str(p.relative_to(world["dir"])) for p in world["dir"].rglob("*") if p.is_file()}
    assert written == EXPECTED_FILES
    for path in world["paths"].values():
        assert Path(path).exists()
    assert {"human_genes", "orthologs", "human_s1", "mouse_s2", "truth_cells"} <= set(world["paths"])


def test_same_seed_gives_byte_identical_files(world, tmp_path):
    time.sleep(1.1)  # a leaked timestamp would now differ
    simulate_world(tmp_path / "again", SEED)
    first, second = _sha256_tree(world["dir"]), _sha256_tree(tmp_path / "again")
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_other_seed_and_params_change_the_world(world, tmp_path):
    simulate_world(tmp_path / "small", SEED + 1, {"cells_per_sample": 120, "n_tfs": 30})
    cells = pd.read_csv(tmp_path / "small" / "truth" / "cells.tsv", sep="\t")
    assert cells.groupby("sample").size().eq(120).all()
    grn = pd.read_csv(tmp_path / "small" / "references" / "grn_human.tsv", sep="\t")
    assert grn["source"].nunique() == 30
    a = (world["dir"] / "references" / "human_genes.tsv").read_bytes()
    assert a != (tmp_path / "small" / "references" / "human_genes.tsv").read_bytes()


def test_params_validation():
    p = WorldParams.from_overrides({"batch_sd": 0.3, "targets_per_tf": [5, 9]})
    assert p.batch_sd == 0.3 and p.targets_per_tf == (5, 9) and p.n_tfs == WorldParams().n_tfs
    with pytest.raises(ValueError, match="no_such_field"):
        WorldParams.from_overrides({"no_such_field": 1})
    with pytest.raises(ValueError, match="no_such_field"):
        simulate_world("/nonexistent/never/written", 0, {"no_such_field": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.batch_sd = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        WorldParams(ok_detected_genes=(600, 300))


def test_world_object_matches_files_and_propagates_perturbations(world, genes):
    w = build_world(SEED)
    assert w.human.genes[["ensembl_id", "symbol", "biotype"]].equals(genes["human"])
    assert w.mouse.genes[["ensembl_id", "symbol", "biotype"]].equals(genes["mouse"])
    for species in ("human", "mouse"):
        for cell_type in w.cell_types:
            expr = w.cell_type_expression(cell_type, species)
            assert expr.shape == (w.species_model(species).n_genes,)
            assert abs(expr.sum() - 1) < 1e-9 and (expr >= 0).all()
    # knocking out a driver TF lowers its activated targets and raises repressed ones
    model = w.human
    inputs = w.program_inputs(w.cell_types[0])
    driver = int(np.flatnonzero(inputs == 1)[0])
    base = w.expected_expression(w.tf_activity(inputs, "human"), "human")[0]
    ko_act = w.tf_activity(inputs, "human", knockout=[driver])
    assert ko_act[driver] == 0
    ko = w.expected_expression(ko_act, "human", knockdown=[model.tf_gene_index[driver]])[0]
    effect = model.weights[driver]
    ratio = ko / base
    assert np.all(ratio[effect > 0] < 1) and np.all(ratio[effect < 0] > 1)
    assert ratio[model.tf_gene_index[driver]] < 0.2
    # TF->TF edges propagate: a downstream TF's activity moves with its regulator
    tf_to_tf = model.weights[:, model.tf_gene_index]
    i, j = map(int, np.argwhere(tf_to_tf != 0)[0])
    x = np.zeros(w.params.n_tfs)
    x[[i, j]] = 1.0, 0.5
    change = w.tf_activity(x, "human")[j] - w.tf_activity(x, "human", knockout=[i])[j]
    assert i < j and np.sign(change) == np.sign(tf_to_tf[i, j])


# ---------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------


def test_gene_tables(genes):
    human, mouse = genes["human"], genes["mouse"]
    assert list(human.columns) == ["ensembl_id", "symbol", "biotype"]
    assert 1100 <= len(human) <= 1300 and 1050 <= len(mouse) <= 1250
    assert human["ensembl_id"].str.fullmatch(r"ENSG\d{11}").all() and human["ensembl_id"].is_unique
    assert mouse["ensembl_id"].str.fullmatch(r"ENSMUSG\d{11}").all() and mouse["ensembl_id"].is_unique
    for table in (human, mouse):
        frac = table["biotype"].value_counts(normalize=True)
        assert 0.65 <= frac["protein_coding"] <= 0.8
        assert 0.08 <= frac["lncRNA"] <= 0.16 and 0.03 <= frac["miRNA"] <= 0.08
        noncore = frac[["processed_pseudogene", "unprocessed_pseudogene", "snRNA", "misc_RNA"]].sum()
        assert 0.06 <= noncore <= 0.11
        assert (table["biotype"] == "Mt_tRNA").sum() == 2
        mito = table[table["symbol"].str.upper().str.startswith("MT-")]
        assert len(mito) == 15 and (mito["biotype"] == "protein_coding").sum() == 13
    assert {"MT-ND1", "MT-CO1", "MT-CYB", "MT-TF", "MT-TV"} <= set(human["symbol"])
    assert {"mt-Nd1", "mt-Co1", "mt-Cytb", "mt-Tf", "mt-Tv"} <= set(mouse["symbol"])
    # one planted ambiguous human symbol; otherwise unique symbols
    dup = human[human["symbol"].duplicated(keep=False)]
    assert len(dup) == 2 and dup["symbol"].nunique() == 1
    assert mouse["symbol"].str.upper().is_unique
    nuclear = human[~human["symbol"].str.startswith("MT-") & (human["biotype"] == "protein_coding")]
    assert nuclear["symbol"].str.fullmatch(r"[A-Z][A-Z0-9]*").all()


def test_ortholog_table(world, genes):
    path = world["dir"] / "references" / "orthologs_biomart.csv"
    assert path.read_text().splitlines()[0] == ORTHOLOG_HEADER
    o = pd.read_csv(path, dtype=str, keep_default_na=False)
    human, mouse = genes["human"], genes["mouse"]
    assert set(o["Gene stable ID"]) == set(human["ensembl_id"])  # every human gene, once or more
    kinds = o["Mouse homology type"].value_counts()
    assert kinds["ortholog_one2one"] > 800 and 0 < kinds["ortholog_one2many"] <= 20
    assert 0 < kinds["ortholog_many2many"] <= 12 and kinds[""] > 100
    empty = o[o["Mouse homology type"] == ""]
    assert (empty.iloc[:, 2:] == "").all().all()
    paired = o[o["Mouse homology type"] != ""]
    assert set(paired["Mouse gene stable ID"]) <= set(mouse["ensembl_id"])
    mouse_symbol = mouse.set_index("ensembl_id")["symbol"]
    assert (mouse_symbol.loc[paired["Mouse gene stable ID"]].to_numpy() == paired["Mouse gene name"]).all()
    assert paired["Mouse orthology confidence [0 low, 1 high]"].isin(["0", "1"]).all()
    one2one = paired[paired["Mouse homology type"] == "ortholog_one2one"]
    assert one2one["Gene stable ID"].is_unique and one2one["Mouse gene stable ID"].is_unique
    same_word = one2one["Gene name"].str.upper() == one2one["Mouse gene name"].str.upper()
    assert same_word.mean() > 0.98  # all but MT-CYB/mt-Cytb
    one2many = paired[paired["Mouse homology type"] == "ortholog_one2many"]
    assert one2many.groupby("Gene stable ID").size().eq(2).all()
    m2m = paired[paired["Mouse homology type"] == "ortholog_many2many"]
    assert m2m.groupby("Gene stable ID").size().ge(2).all()
    assert m2m.groupby("Mouse gene stable ID").size().ge(2).all()
    mt = human[human["symbol"].str.startswith("MT-")]["ensembl_id"]
    assert (o.set_index("Gene stable ID").loc[mt, "Mouse homology type"] == "ortholog_one2one").all()
    mouse_only = set(mouse["ensembl_id"]) - set(paired["Mouse gene stable ID"])
    assert 100 <= len(mouse_only) <= 400
    assert (human.set_index("ensembl_id").loc[list(one2one["Gene stable ID"]), "biotype"]
            .isin(["protein_coding", "lncRNA", "miRNA", "Mt_tRNA"]).all())


def test_networks(world, genes):
    d = world["dir"] / "references"
    nets = {s: pd.read_csv(d / f"grn_{s}.tsv", sep="\t") for s in ("human", "mouse")}
    for species, net in nets.items():
        table = genes[species]
        assert list(net.columns) == ["source", "target", "mode"]
        assert net["mode"].isin(["Activation", "Repression"]).all()
        assert set(net["source"]) | set(net["target"]) <= set(table["symbol"])
        biotype = table.drop_duplicates("symbol").set_index("symbol")["biotype"]
        assert (biotype.loc[net["source"].unique()] == "protein_coding").all()
        assert 35 <= net["source"].nunique() <= 45
        assert not net.duplicated(["source", "target"]).any()
    sizes = nets["human"].groupby("source").size()
    assert sizes.between(10, 30).all()
    # WorldParams.activation_prob 0.9: mostly activation, some repression
    assert 0.04 < (nets["human"]["mode"] == "Repression").mean() < 0.2
    # mouse = human carried over one2one orthologs, minus a few, plus a few
    o = pd.read_csv(d / "orthologs_biomart.csv", dtype=str, keep_default_na=False)
    o = o[o["Mouse homology type"] == "ortholog_one2one"]
    h2m = dict(zip(o["Gene name"], o["Mouse gene name"]))
    carried = {(h2m[s], h2m[t], m) for s, t, m in nets["human"].itertuples(index=False) if t in h2m}
    mouse_edges = set(nets["mouse"].itertuples(index=False, name=None))
    assert 1 <= len(carried - mouse_edges) <= 15
    assert 1 <= len(mouse_edges - carried) <= 20
    assert len(carried & mouse_edges) > 0.9 * len(carried)


def test_gene_groups(world, genes):
    hg = pd.read_csv(world["dir"] / "references" / "hgnc_gene_groups.tsv", sep="\t", dtype=str,
                     keep_default_na=False)
    assert list(hg.columns) == ["hgnc_id", "symbol", "name", "locus_group", "locus_type", "status",
                                "gene_group", "gene_group_id", "ensembl_gene_id", "mgd_id"]
    human = genes["human"]
    assert set(hg["ensembl_gene_id"]) <= set(human["ensembl_id"]) and hg["symbol"].is_unique
    assert hg["hgnc_id"].str.fullmatch(r"HGNC:\d+").all()
    pairs = human.set_index("ensembl_id").loc[hg["ensembl_gene_id"], "symbol"].to_numpy()
    assert (pairs == hg["symbol"]).all()
    grouped = hg[hg["gene_group"] != ""]
    assert (grouped["gene_group"].str.count(r"\|") == grouped["gene_group_id"].str.count(r"\|")).all()
    assert (grouped["gene_group"].str.contains("|", regex=False)).sum() >= 5
    members = grouped.assign(group=grouped["gene_group"].str.split("|")).explode("group")
    sizes = members.groupby("group").size()
    assert 25 <= len(sizes) <= 35 and sizes.between(4, 25).all()
    assert len(hg) - len(grouped) > 500  # most genes have no group


# ---------------------------------------------------------------------------
# promoters and motifs
# ---------------------------------------------------------------------------


def test_promoters_and_planted_motifs(world, genes):
    d = world["dir"]
    motifs = pd.read_csv(d / "truth" / "motifs.tsv", sep="\t")
    assert set(motifs["kind"]) == {"tf", "family"}
    assert motifs["consensus"].str.fullmatch(r"[ACGT]{8,12}").all() and motifs["consensus"].is_unique
    tfs = pd.read_csv(d / "truth" / "tfs.tsv", sep="\t")
    modules = pd.read_csv(d / "truth" / "coexpression_modules.tsv", sep="\t")
    fams = motifs[motifs["kind"] == "family"]
    promoters = {}
    for species in ("human", "mouse"):
        records = _read_fasta(d / "references" / f"promoters_{species}.fa")
        table = genes[species]
        assert list(records) == table["ensembl_id"].tolist()
        assert [r[0] for r in records.values()] == table["symbol"].tolist()
        seqs = [r[1] for r in records.values()]
        assert {len(s) for s in seqs} == {2500} and set("".join(seqs)) == set("ACGT")
        joined = "".join(seqs)
        assert 0.40 <= (joined.count("G") + joined.count("C")) / len(joined) <= 0.45
        promoters[species] = records

        ids = np.array(table["ensembl_id"])
        indexes = _KmerIndex.for_lengths(seqs, set(motifs["consensus"].str.len()))
        net = pd.read_csv(d / "references" / f"grn_{species}.tsv", sep="\t")
        sym_to_id = dict(zip(table["symbol"], table["ensembl_id"]))
        owner_symbol = dict(zip(tfs["human_symbol"], tfs[f"{species}_symbol"]))
        target_frac, other_frac = [], []
        for m in motifs[motifs["kind"] == "tf"].itertuples():
            targets = {sym_to_id[t] for t in net.loc[net["source"] == owner_symbol[m.owner], "target"]}
            assert len(targets) >= 5
            hits = indexes[len(m.consensus)].count(m.consensus, int(len(m.consensus) >= 10))
            is_target = np.isin(ids, list(targets))
            target_frac.append((hits[is_target] > 0).mean())
            other_frac.append((hits[~is_target] > 0).mean())
            assert hits[is_target].mean() > 3 * hits[~is_target].mean()
        assert np.median(target_frac) > 0.8 and np.median(other_frac) < 0.2
        for m in fams.itertuples():
            members = set(modules.loc[(modules["module"] == f"family{m.owner_id}")
                                      & (modules["species"] == species), "ensembl_id"])
            hits = indexes[len(m.consensus)].count(m.consensus, int(len(m.consensus) >= 10))
            is_member = np.isin(ids, list(members))
            assert hits[is_member].mean() > 3 * hits[~is_member].mean()

    # homologous promoters are similar (~85% identity), unrelated ones are not
    o = pd.read_csv(d / "references" / "orthologs_biomart.csv", dtype=str, keep_default_na=False)
    o = o[o["Mouse homology type"] == "ortholog_one2one"]

    def identity(a, b):
        return np.mean(np.frombuffer(a.encode(), np.uint8) == np.frombuffer(b.encode(), np.uint8))

    homologous = [identity(promoters["human"][h][1], promoters["mouse"][m][1])
                  for h, m in zip(o["Gene stable ID"], o["Mouse gene stable ID"])]
    shuffled = [identity(promoters["human"][h][1], promoters["mouse"][m][1])
                for h, m in zip(o["Gene stable ID"], np.roll(o["Mouse gene stable ID"].to_numpy(), 1))]
    assert 0.78 <= np.mean(homologous) <= 0.9 and np.mean(shuffled) < 0.35


# ---------------------------------------------------------------------------
# count matrices
# ---------------------------------------------------------------------------


def test_count_layouts(world, genes, cells):
    d = world["dir"]
    human, mouse = genes["human"], genes["mouse"]
    for sample in SAMPLES:
        truth = cells[cells["sample"] == sample]
        adata = _read_sample(d, sample)
        assert adata.n_obs == len(truth) == 300
        assert list(adata.obs_names) == truth["barcode"].tolist()
        assert pd.Index(adata.obs_names).str.fullmatch(r"[ACGT]{16}-1").all()
        X = adata.X
        assert np.all(X.data == np.round(X.data)) and X.data.min() > 0
        if sample.endswith(("s1", "s2")) and sample != "mouse_s2":  # h5ad files
            assert isinstance(X, sp.csr_matrix) and X.dtype == np.int32
            assert {"cell_type", "donor", "batch", "planted_quality"} <= set(adata.obs.columns)
            assert (adata.obs["cell_type"].astype(str).to_numpy() == truth["cell_type"].to_numpy()).all()
            assert (adata.obs["planted_quality"].astype(str).to_numpy()
                    == truth["planted_quality"].to_numpy()).all()
            assert adata.obs["batch"].nunique() == 1 and adata.obs["donor"].nunique() == 1
    assert cells["barcode"].is_unique

    s1 = _read_sample(d, "human_s1")
    assert pd.Index(s1.var_names).str.fullmatch(r"ENSG\d{11}\.\d+").all()
    assert [v.split(".")[0] for v in s1.var_names] == human["ensembl_id"].tolist()
    s2 = _read_sample(d, "human_s2")
    unknown = set(s2.var_names) - set(human["symbol"])
    assert len(unknown) == 5 and all(re.fullmatch(r"LOC\d+", u) for u in unknown)
    assert set(human["symbol"]) <= set(s2.var_names) and s2.var_names.is_unique
    m1 = _read_sample(d, "mouse_s1")
    assert m1.var_names.tolist() == mouse["ensembl_id"].tolist()

    # 10x h5: raw layout, then scanpy's reader gives back exactly those numbers
    with h5py.File(d / "counts" / "human_s3.h5", "r") as f:
        m = f["matrix"]
        n_genes, n_cells = m["shape"][:]
        assert (n_genes, n_cells) == (len(human), 300)
        assert len(m["indptr"]) == n_cells + 1  # compressed by cell
        assert m["data"].dtype == np.int32
        assert set(m["features/feature_type"][:]) == {b"Gene Expression"}
        assert set(m["features/genome"][:]) == {b"GRCh38"}
        raw = sp.csc_matrix((m["data"][:], m["indices"][:], m["indptr"][:]), shape=(n_genes, n_cells))
        ids = m["features/id"][:].astype(str)
    s3 = _read_sample(d, "human_s3")
    assert (s3.var["gene_ids"].to_numpy() == ids).all() and ids.tolist() == human["ensembl_id"].tolist()
    assert (s3.var["feature_types"] == "Gene Expression").all()
    assert (sp.csr_matrix(s3.X) != raw.T.tocsr()).nnz == 0

    # 10x mtx folder: raw gzip files, then scanpy's reader
    with gzip.open(d / "counts" / "mouse_s2" / "features.tsv.gz", "rt") as fh:
        feats = pd.read_csv(fh, sep="\t", header=None)
    assert feats[0].tolist() == mouse["ensembl_id"].tolist() and (feats[2] == "Gene Expression").all()
    with gzip.open(d / "counts" / "mouse_s2" / "matrix.mtx.gz", "rt") as fh:
        assert fh.readline().startswith("%%MatrixMarket matrix coordinate integer")
    m2 = _read_sample(d, "mouse_s2")
    assert m2.shape == (300, len(mouse)) and (m2.var["gene_ids"].to_numpy() == feats[0].to_numpy()).all()


def test_planted_quality_is_recoverable_by_qc(world, genes, cells):
    """Independent QC cascade on the written files keeps exactly the 'ok' cells."""
    d = world["dir"]
    for sample in SAMPLES:
        adata = _read_sample(d, sample)
        metrics = _cell_metrics(adata, _feature_annotation(adata, sample, genes))
        quality = cells[cells["sample"] == sample].set_index("barcode").loc[metrics.index, "planted_quality"]
        counts = quality.value_counts()
        assert counts["ok"] / len(quality) >= 0.85
        assert 0.04 <= counts["low_genes"] / len(quality) <= 0.08
        assert 0.04 <= counts["high_mito"] / len(quality) <= 0.08
        ok, low, mito = (metrics[quality.to_numpy() == q] for q in ("ok", "low_genes", "high_mito"))
        assert ok["n_genes"].between(250, 700).all() and ok["mito_fraction"].between(0.01, 0.08).all()
        assert (ok["n_genes"] > 512).any()  # some cells exceed a 512-token context
        assert low["n_genes"].between(30, 150).all()
        assert mito["n_genes"].between(250, 700).all() and mito["mito_fraction"].between(0.25, 0.6).all()
        z = (ok["n_genes"] - ok["n_genes"].mean()) / ok["n_genes"].std()
        assert z.abs().max() < 2.7  # far from the 3 SD filter
        # the published cascade, each filter on the cells remaining
        keep = metrics["n_genes"] >= 200
        keep &= metrics["n_coding"] > 7
        keep &= metrics["mito_fraction"] <= 0.15
        n = metrics.loc[keep, "n_genes"]
        for ddof in (0, 1):
            kept = keep & ((metrics["n_genes"] - n.mean()).abs() <= 3 * n.std(ddof=ddof))
            assert set(metrics.index[kept]) == set(quality.index[quality == "ok"])


def test_cell_types_separate_and_batch_is_weaker(world, genes, cells):
    d = world["dir"]

    def load(sample):
        adata = _read_sample(d, sample)
        ann = _feature_annotation(adata, sample, genes)
        truth = cells[cells["sample"] == sample].set_index("barcode").loc[adata.obs_names]
        ok = (truth["planted_quality"] == "ok").to_numpy()
        return _lognorm(adata, ann["ensembl_id"].to_numpy())[ok], truth["cell_type"].to_numpy()[ok]

    def nearest_centroid_accuracy(train, test):
        (xa, ya), (xb, yb) = train, test
        xb = xb[xa.columns]
        types = np.unique(ya)
        centroids = np.stack([xa.to_numpy()[ya == t].mean(axis=0) for t in types])
        dist = ((xb.to_numpy()[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
        return (types[dist.argmin(axis=1)] == yb).mean()

    h1, h3, m1, m2 = load("human_s1"), load("human_s3"), load("mouse_s1"), load("mouse_s2")
    assert len(np.unique(h1[1])) == 5
    assert nearest_centroid_accuracy(h1, h3) > 0.9
    assert nearest_centroid_accuracy(m1, m2) > 0.9

    def sq_distance(a, b):  # unbiased squared distance between two group means
        return (((a.mean(0) - b.mean(0)) ** 2).sum()
                - a.var(0, ddof=1).sum() / len(a) - b.var(0, ddof=1).sum() / len(b))

    (xa, ya), (xb, yb) = h1, h3
    xb = xb[xa.columns]
    types = np.unique(ya)
    batch = [sq_distance(xa.to_numpy()[ya == t], xb.to_numpy()[yb == t]) for t in types]
    between = [sq_distance(xa.to_numpy()[ya == s], xa.to_numpy()[ya == t])
               for s in types for t in types if s < t]
    assert min(batch) > 5  # the sample effect is visible ...
    assert max(batch) < min(between)  # ... but weaker than any cell-type difference


def test_family_coexpression_is_planted(world, genes, cells):
    d = world["dir"]
    modules = pd.read_csv(d / "truth" / "coexpression_modules.tsv", sep="\t")
    adata = _read_sample(d, "human_s1")
    truth = cells[cells["sample"] == "human_s1"].set_index("barcode")
    ok = truth.loc[adata.obs_names, "planted_quality"] == "ok"
    x = _lognorm(adata, [v.split(".")[0] for v in adata.var_names])[ok.to_numpy()]
    x = x.loc[:, (x > 0).mean() > 0.5]  # well-detected genes
    corr = np.corrcoef(x.to_numpy().T)
    col = {g: i for i, g in enumerate(x.columns)}
    human_modules = modules[modules["species"] == "human"]
    within = []
    for _, members in human_modules.groupby("module")["ensembl_id"]:
        idx = [col[g] for g in members if g in col]
        within += [corr[i, j] for a, i in enumerate(idx) for j in idx[a + 1:]]
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, len(col), (2000, 2))
    background = [corr[i, j] for i, j in pairs if i != j]
    assert len(within) > 50 and np.mean(within) > np.mean(background) + 0.1


def test_truth_tables(world, genes):
    d = world["dir"] / "truth"
    types = pd.read_csv(d / "cell_types.tsv", sep="\t")
    assert types["cell_type"].nunique() == 5 and set(types["species"]) == {"human", "mouse"}
    drivers = types[types["role"] == "driver"]
    assert drivers.groupby(["cell_type", "species"]).size().eq(4).all()
    grn = pd.read_csv(world["dir"] / "references" / "grn_human.tsv", sep="\t")
    assert set(types.loc[types["species"] == "human", "tf"]) <= set(grn["source"])
    samples = pd.read_csv(d / "samples.tsv", sep="\t", keep_default_na=False)
    assert samples["sample"].tolist() == list(SAMPLES)
    assert set(samples["format"]) == {"h5ad", "10x_h5", "10x_mtx"}
    assert all((world["dir"] / p).exists() for p in samples["path"])
    effects = pd.read_csv(d / "network_effects.tsv", sep="\t")
    assert ((effects["weight"] > 0) == (effects["mode"] == "Activation")).all()
