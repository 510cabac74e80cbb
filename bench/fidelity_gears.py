"""Fidelity of our GEARS re-implementation against the published package (``cell-gears`` 0.1.2).

Both models train on the same data and are scored by the same metric code:

* data: the prepared Perturb-seq experiment of a finished workflow run
  (``<results>/tasks/perturbation/<dataset>/prepared``: the cells, GEARS's
  simulation split and the top-20 DE genes the rule used) and the dataset's
  GO gene sets (the GMT file of ``tasks.perturbation.datasets``);
* ours: ``genecompass.tasks.perturbation.benchmark.run_method("gears", ...)``,
  the very function of rule ``perturbation_predict``;
* published: ``gears.PertData`` / ``gears.GEARS`` from ``cell-gears==0.1.2``,
  installed once in an isolated virtual environment
  (``bench/.fidelity/gears_venv``, git-ignored, pinned versions: see ``PINS``)
  and run offline: its ``gene2go_all.pkl`` is written from our GO gene sets,
  the split is handed over as a ``custom`` split, and with ``--graphs shared``
  (default) the GO and co-expression graphs are the ones our rule builds,
  passed to ``model_initialize(G_go=..., G_coexpress=...)``; with
  ``--graphs published`` the package builds its own graphs from the same GO
  file and split (the graph-construction differences then count too);
* hyper-parameters: the published defaults on both sides (hidden 64, 20
  epochs, lr 1e-3, weight decay 5e-4, batch 32, direction lambda 0.1,
  1 GO and 1 co-expression SGConv layer, 20 neighbours, thresholds 0.1 / 0.4),
  whatever the workflow config says;
* metrics: ``genecompass.tasks.perturbation.metrics`` on both sides'
  predictions (mean predicted profile over 300 control cells per held-out
  condition) against the same pseudo-bulk truth and DE genes.

The table gives, per metric and test subgroup, mean +- sd over the seeds for
ours and for the published package, and the difference; ``*`` marks a
difference larger than the sum of the two seed sds.

    python bench/fidelity_gears.py --results /work/demo_final/results --seeds 3 \
        --out bench/.fidelity/gears_fidelity.tsv

A benchmark, not a test: CI does not run it. The published package's files are
installed in the venv and called; none is copied into this repository.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fidelity_venv import add_shared_options, beyond_seed_spread, ensure_venv, venv_python  # bench/, beside this script

if TYPE_CHECKING:
    import pandas as pd

REPO = Path(__file__).resolve().parent.parent
FIDELITY = REPO / "bench" / ".fidelity"

# The published package and the versions it runs with (scipy < 1.15: GEARS.__init__ indexes a
# sparse matrix with a pandas Series, upstream issue #90; pandas < 3: it indexes Series
# positionally with [0]). torch comes from the local CPU wheel when there is one.
PINS = ["cell-gears==0.1.2", "scipy==1.14.1", "torch_geometric==2.8.1", "numpy==2.2.6", "pandas==2.3.3",
        "scanpy==1.11.5", "anndata==0.12.19", "networkx==3.6.1", "dcor==0.7", "scikit-learn==1.9.1",
        "numba==0.68.1", "tqdm==4.70.1", "requests==2.34.2"]
TORCH_VERSION = "2.13.0"
TORCH_WHEELS = "/opt/wheels/torch-2.13.0*.whl"

# GEARS's published defaults (gears.GEARS.model_initialize / train, PertData.get_dataloader usage).
PUBLISHED_DEFAULTS = {"hidden_size": 64, "epochs": 20, "lr": 1e-3, "weight_decay": 5e-4, "batch_size": 32,
                      "direction_lambda": 0.1, "num_go_gnn_layers": 1, "num_gene_gnn_layers": 1,
                      "go_neighbours": 20, "go_threshold": 0.1, "coexpress_neighbours": 20,
                      "coexpress_threshold": 0.4, "control_samples": 300}

TABLE_METRICS = ("pearson_delta", "mse_top20_de", "pearson_delta_top20_de")
SUBGROUP_ORDER = ("all", "unseen_single", "combo_seen0", "combo_seen1", "combo_seen2")


def log(message: str) -> None:
    print(f"[fidelity_gears {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The isolated environment of the published package
# ---------------------------------------------------------------------------


def ensure_gears_venv(venv: Path, torch_wheel: str | None, rebuild: bool) -> float:
    """The pinned venv of cell-gears; torch first, from the local CPU wheel (a bare torch requirement
    would pull the CUDA packages)."""
    wheels = sorted(glob.glob(torch_wheel or TORCH_WHEELS))
    torch_req = wheels[-1] if wheels else f"torch=={TORCH_VERSION}"
    extra = [] if wheels else ["--extra-index-url", "https://download.pytorch.org/whl/cpu"]
    return ensure_venv(venv, [[*extra, torch_req], [*PINS, f"torch=={TORCH_VERSION}"]],
                       "import gears, torch_geometric, scipy; print(scipy.__version__)", rebuild=rebuild,
                       stamp={"torch": Path(torch_req).name}, log=log)


# ---------------------------------------------------------------------------
# Inputs: what the rule used
# ---------------------------------------------------------------------------


def read_config(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def locate_inputs(results: Path, config_path: Path | None, dataset: str | None, go: Path | None):
    """(dataset name, prepared folder, GO gene-set file, raw data file) of a results folder."""
    workdir = results.resolve().parent
    if config_path is None:
        candidate = workdir / "config" / "config.yaml"
        config_path = candidate if candidate.exists() else REPO / "config" / "config.yaml"
    entries = (read_config(config_path).get("tasks", {}).get("perturbation", {}) or {}).get("datasets") or []
    if dataset is None:
        if not entries:
            raise SystemExit(f"{config_path}: no tasks.perturbation.datasets; pass --dataset and --go")
        dataset = entries[0]["name"]
    entry = next((e for e in entries if e.get("name") == dataset), {})

    def local(value):
        if value is None or isinstance(value, dict):
            return None
        path = Path(value)
        return path if path.is_absolute() else workdir / path

    go = go or local(entry.get("go_gene_sets"))
    if go is None or not go.exists():
        raise SystemExit(f"GO gene sets of {dataset} not found ({go}); pass --go")
    return dataset, results / "tasks" / "perturbation" / dataset / "prepared", go, local(entry.get("data")), config_path


def load_prepared(prepared_dir: Path, data_file: Path | None, go: Path, seed: int, task: dict, scratch: Path):
    """The rule's prepared experiment; made here with our library when the results folder lacks it."""
    from genecompass.tasks.perturbation import benchmark
    from genecompass.tasks.perturbation.data import read_gmt

    if (prepared_dir / "cells.h5ad").exists():
        log(f"prepared experiment: {prepared_dir}")
        return benchmark.read_prepared(prepared_dir)
    if data_file is None or not data_file.exists():
        raise SystemExit(f"{prepared_dir} is missing and so is the dataset file ({data_file}); run "
                         f"`snakemake {prepared_dir / 'cells.h5ad'}` in the workflow's folder first")
    log(f"{prepared_dir} is missing: preparing {data_file} with genecompass.tasks.perturbation.benchmark.prepare")
    out = scratch / "prepared"
    prepared, _ = benchmark.prepare(data_file, read_gmt(go), task.get("n_top_genes"), task.get("n_de_genes", 20),
                                    seed, task.get("split"))
    benchmark.write_prepared(prepared, out)
    return benchmark.read_prepared(out)


def our_graphs(prepared, gene_terms: dict, settings) -> dict:
    """The GO and co-expression graphs exactly as ``benchmark.run_method('gears')`` builds them."""
    from genecompass.tasks.perturbation import benchmark

    pert_genes, go, coexpress = benchmark.gears_graphs(prepared, gene_terms, settings)
    return {"genes": list(prepared.adata.var_names), "pert_genes": pert_genes, "go": go, "coexpress": coexpress}


def export_inputs(prepared, gene_terms: dict, graphs: dict, export: Path) -> None:
    """Files the published package reads: cells, gene2go, custom split, graphs, conditions to predict."""
    import numpy as np
    import scipy.sparse as sp

    from genecompass.tasks.perturbation.data import condition_genes

    if export.exists():
        shutil.rmtree(export)
    export.mkdir(parents=True)
    adata = prepared.adata.copy()
    adata.X = sp.csr_matrix(np.asarray(adata.X.todense() if sp.issparse(adata.X) else adata.X, np.float32))
    adata.layers.clear()
    # Ours pools every cell of a condition whatever its cell type; GEARS ranks DE genes per cell type.
    adata.obs = adata.obs[["condition"]].astype(str).assign(cell_type="all")
    adata.var = adata.var[["gene_name"]].astype(str)
    adata.uns.clear()
    adata.write_h5ad(export / "cells.h5ad")
    # gene2go_all.pkl: gene symbol -> set of GO terms, from the GO gene sets the rule used.
    gene2go = {g: set(gene_terms[g.upper()]) for g in graphs["pert_genes"]}
    with open(export / "gene2go_all.pkl", "wb") as handle:
        pickle.dump(gene2go, handle)
    split = {part: prepared.split.conditions(part) for part in ("train", "val", "test")}
    with open(export / "split.pkl", "wb") as handle:
        pickle.dump(split, handle)
    np.savez(export / "graphs.npz", go_index=graphs["go"][0], go_weight=graphs["go"][1],
             coexpress_index=graphs["coexpress"][0], coexpress_weight=graphs["coexpress"][1])
    test = split["test"]
    (export / "job.json").write_text(json.dumps({
        "genes": graphs["genes"], "pert_genes": graphs["pert_genes"],
        "test": {c: condition_genes(c) for c in test}}, indent=1))


# ---------------------------------------------------------------------------
# The published package (runs inside its venv: ``--worker``)
# ---------------------------------------------------------------------------


def worker(export: Path, work: Path, seeds: list[int], graphs_mode: str, defaults: dict) -> None:
    """Train and predict with cell-gears 0.1.2 for each seed; writes predictions_<seed>.tsv into ``work``."""
    import random

    import numpy as np
    import pandas as pd
    import scanpy as sc
    import torch
    from gears import GEARS, PertData

    torch.set_num_threads(1)
    job = json.loads((export / "job.json").read_text())
    if work.exists():
        shutil.rmtree(work)
    (work / "data").mkdir(parents=True)
    os.chdir(work)  # make_GO writes ./data/go_essential_<name>.csv relative to the working directory
    data_path = work / "data"
    shutil.copy(export / "gene2go_all.pkl", data_path / "gene2go_all.pkl")  # found locally: no download
    graphs = np.load(export / "graphs.npz")
    info: dict = {"seeds": {}}
    pert_data = PertData(str(data_path), default_pert_graph=False)
    np.random.seed(seeds[0])
    pert_data.new_data_process("demo", sc.read_h5ad(export / "cells.h5ad"))
    pert_data.prepare_split(split="custom", split_dict_path=str(export / "split.pkl"))
    if list(pert_data.pert_names) != job["pert_genes"] or list(pert_data.adata.var.gene_name) != job["genes"]:
        raise SystemExit("the published package's gene or perturbation order differs from ours")
    for seed in seeds:
        start = time.time()
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        pert_data.create_dataset_file()  # each perturbed cell's control cell is drawn here (np.random)
        pert_data.get_dataloader(batch_size=defaults["batch_size"])
        model = GEARS(pert_data, device="cpu")
        model.dataloader = {k: v for k, v in model.dataloader.items() if k != "test_loader"}  # we score the test
        given = {}
        if graphs_mode == "shared":
            given = {"G_go": torch.as_tensor(graphs["go_index"], dtype=torch.long),
                     "G_go_weight": torch.as_tensor(graphs["go_weight"], dtype=torch.float32),
                     "G_coexpress": torch.as_tensor(graphs["coexpress_index"], dtype=torch.long),
                     "G_coexpress_weight": torch.as_tensor(graphs["coexpress_weight"], dtype=torch.float32)}
        model.model_initialize(hidden_size=defaults["hidden_size"], num_go_gnn_layers=defaults["num_go_gnn_layers"],
                               num_gene_gnn_layers=defaults["num_gene_gnn_layers"],
                               num_similar_genes_go_graph=defaults["go_neighbours"],
                               num_similar_genes_co_express_graph=defaults["coexpress_neighbours"],
                               coexpress_threshold=defaults["coexpress_threshold"],
                               direction_lambda=defaults["direction_lambda"], **given)
        model.train(epochs=defaults["epochs"], lr=defaults["lr"], weight_decay=defaults["weight_decay"])
        predicted = model.predict(list(job["test"].values()))
        table = pd.DataFrame(np.vstack([predicted["_".join(genes)] for genes in job["test"].values()]),
                             index=list(job["test"]), columns=job["genes"])
        table.to_csv(work / f"predictions_{seed}.tsv", sep="\t", index_label="condition")
        info["seeds"][seed] = {"seconds": time.time() - start,
                               "go_graph_edges": int(model.config["G_go"].shape[1]),
                               "coexpression_graph_edges": int(model.config["G_coexpress"].shape[1])}
        print(f"published seed {seed}: {info['seeds'][seed]}", file=sys.stderr, flush=True)
    (work / "info.json").write_text(json.dumps(info, indent=1))


def run_published(venv: Path, export: Path, work: Path, seeds: list[int], graphs_mode: str, threads_env: dict):
    import pandas as pd

    cmd = [str(venv_python(venv)), str(Path(__file__).resolve()), "--worker", str(export), "--work", str(work),
           "--graphs", graphs_mode, "--seed-list", *map(str, seeds), "--defaults", json.dumps(PUBLISHED_DEFAULTS)]
    log_path = export.parent / f"published_{graphs_mode}.log"
    log(f"published GEARS: {len(seeds)} seed(s), log {log_path}")
    with open(log_path, "w") as handle:
        result = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **threads_env})
    if result.returncode:
        raise SystemExit(f"the published GEARS run failed (exit {result.returncode}); see {log_path}:\n"
                         + "".join(open(log_path).readlines()[-30:]))
    info = json.loads((work / "info.json").read_text())
    return ({seed: pd.read_csv(work / f"predictions_{seed}.tsv", sep="\t", index_col="condition") for seed in seeds},
            info)


# ---------------------------------------------------------------------------
# Ours, and the table
# ---------------------------------------------------------------------------


def run_ours(prepared, gene_terms: dict, seeds: list[int]):
    import torch

    from genecompass.tasks.perturbation import benchmark

    torch.set_num_threads(1)
    config = {"hidden_size": PUBLISHED_DEFAULTS["hidden_size"], "epochs": PUBLISHED_DEFAULTS["epochs"],
              "lr": PUBLISHED_DEFAULTS["lr"], "batch_size": PUBLISHED_DEFAULTS["batch_size"], "loss": "gears",
              "device": "cpu"}
    for key in ("weight_decay", "direction_lambda", "num_go_gnn_layers", "num_gene_gnn_layers", "go_neighbours",
                "go_threshold", "coexpress_neighbours", "coexpress_threshold", "control_samples"):
        config[key] = PUBLISHED_DEFAULTS[key]
    predictions, infos = {}, {}
    for seed in seeds:
        start = time.time()
        predicted, info = benchmark.run_method("gears", prepared, gene_terms, seed, config)
        info["seconds"] = time.time() - start
        predictions[seed], infos[seed] = predicted, info
        log(f"ours seed {seed}: {info['seconds']:.0f} s, best validation top-20 DE MSE "
            f"{min(h['val_top20_de_mse'] for h in info['history']):.4f}")
    return predictions, infos


def scores(prepared, predictions: dict) -> pd.DataFrame:
    """Our metrics module on each seed's predictions: one row per seed x subgroup."""
    import pandas as pd

    from genecompass.tasks.perturbation import metrics

    frames = []
    for seed, predicted in predictions.items():
        table = metrics.evaluate(predicted, prepared.profiles, prepared.de_genes, prepared.split.subgroup)
        table.insert(0, "method", "x")
        summary = metrics.aggregate(table).drop(columns="method")
        summary.insert(0, "seed", seed)
        frames.append(summary)
    return pd.concat(frames, ignore_index=True)


def fidelity_table(ours, published) -> pd.DataFrame:
    import pandas as pd

    rows = []
    subgroups = [s for s in SUBGROUP_ORDER if s in set(ours["subgroup"])]
    subgroups += sorted(set(ours["subgroup"]) - set(subgroups))
    for metric in TABLE_METRICS:
        for subgroup in subgroups:
            a = ours.loc[ours["subgroup"] == subgroup, metric]
            b = published.loc[published["subgroup"] == subgroup, metric]
            sd_a, sd_b = (float(x.std(ddof=1)) if len(x) > 1 else 0.0 for x in (a, b))
            diff = float(a.mean() - b.mean())
            rows.append({"metric": metric, "subgroup": subgroup,
                         "n_conditions": int(ours.loc[ours["subgroup"] == subgroup, "n_conditions"].iloc[0]),
                         "ours_mean": float(a.mean()), "ours_sd": sd_a, "published_mean": float(b.mean()),
                         "published_sd": sd_b, "difference": diff,
                         "beyond_seed_spread": beyond_seed_spread(diff, sd_a, sd_b)})
    return pd.DataFrame(rows)


def print_table(table, header: str) -> None:
    print(header)
    print(f"{'metric':<24}{'subgroup':<15}{'n':>3}  {'ours (mean ± sd)':>18}  {'published (mean ± sd)':>22}  "
          f"{'difference':>10}")
    for row in table.itertuples():
        flag = " *" if row.beyond_seed_spread else ""
        print(f"{row.metric:<24}{row.subgroup:<15}{row.n_conditions:>3}  "
              f"{row.ours_mean:>9.4f} ± {row.ours_sd:<6.4f}  {row.published_mean:>13.4f} ± {row.published_sd:<6.4f}"
              f"  {row.difference:>+10.4f}{flag}")
    print("* |difference| > sd(ours) + sd(published)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "results",
                        help="a finished workflow results folder (default: the repository's results/, the demo)")
    parser.add_argument("--config", type=Path, default=None,
                        help="its config (default: <results>/../config/config.yaml, else the repository's)")
    parser.add_argument("--dataset", default=None, help="tasks.perturbation dataset (default: the first)")
    parser.add_argument("--go", type=Path, default=None, help="GO gene-set GMT (default: the dataset's)")
    add_shared_options(parser, FIDELITY / "gears_venv")
    parser.add_argument("--graphs", choices=("shared", "published"), default="shared",
                        help="shared: the published model gets our rule's GO and co-expression graphs (default); "
                             "published: it builds its own from the same GO file and split")
    parser.add_argument("--out", type=Path, default=FIDELITY / "gears_fidelity.tsv", help="the table as TSV")
    parser.add_argument("--torch-wheel", default=None, help=f"local torch wheel (default: {TORCH_WHEELS})")
    # internal: the run inside the published package's venv
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed-list", type=int, nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--defaults", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.work, args.seed_list, args.graphs, json.loads(args.defaults))
        return

    threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    os.environ.update(threads)
    total = time.time()
    build_seconds = ensure_gears_venv(args.venv, args.torch_wheel, args.rebuild_venv)

    from genecompass.tasks.perturbation.data import read_gmt
    from genecompass.tasks.perturbation.gears import GearsSettings

    dataset, prepared_dir, go, data_file, config_path = locate_inputs(args.results, args.config, args.dataset, args.go)
    scratch = FIDELITY / "gears" / dataset
    task = read_config(config_path).get("tasks", {}).get("perturbation", {})
    prepared = load_prepared(prepared_dir, data_file, go, read_config(config_path).get("seed", 0), task, scratch)
    gene_terms = read_gmt(go)
    settings = GearsSettings(**{k: v for k, v in PUBLISHED_DEFAULTS.items() if k != "epochs"})
    graphs = our_graphs(prepared, gene_terms, settings)
    export = scratch / "export"
    export_inputs(prepared, gene_terms, graphs, export)
    seeds = list(range(args.seeds))
    log(f"{dataset}: {prepared.adata.n_obs} cells, {prepared.adata.n_vars} genes, "
        f"{len(prepared.split.conditions('train'))} train / {len(prepared.split.conditions('val'))} val / "
        f"{len(prepared.split.conditions('test'))} test conditions, GO graph {graphs['go'][0].shape[1]} edges, "
        f"co-expression graph {graphs['coexpress'][0].shape[1]} edges")

    start = time.time()
    ours_predictions, ours_info = run_ours(prepared, gene_terms, seeds)
    ours_seconds = time.time() - start
    for info in ours_info.values():  # the graphs our rule built are the ones handed to the published model
        if (info["go_graph_edges"], info["coexpression_graph_edges"]) != (graphs["go"][0].shape[1],
                                                                          graphs["coexpress"][0].shape[1]):
            log("warning: run_method built other graphs than this script exported; the published side's differ")
    start = time.time()
    published_predictions, published_info = run_published(args.venv, export, scratch / f"work_{args.graphs}",
                                                          seeds, args.graphs, threads)
    published_seconds = time.time() - start

    table = fidelity_table(scores(prepared, ours_predictions), scores(prepared, published_predictions))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, sep="\t", index=False, float_format="%.6g")
    edges = next(iter(published_info["seeds"].values()))
    print_table(table, f"GEARS fidelity on {dataset} ({prepared_dir}): ours (genecompass) vs cell-gears 0.1.2, "
                       f"seeds {seeds}, published defaults (epochs {PUBLISHED_DEFAULTS['epochs']}, hidden "
                       f"{PUBLISHED_DEFAULTS['hidden_size']}, batch {PUBLISHED_DEFAULTS['batch_size']}, lr "
                       f"{PUBLISHED_DEFAULTS['lr']}), graphs: {args.graphs} (published side: GO "
                       f"{edges['go_graph_edges']} / co-expression {edges['coexpression_graph_edges']} edges; ours: "
                       f"{graphs['go'][0].shape[1]} / {graphs['coexpress'][0].shape[1]})")
    print(f"venv build {build_seconds:.0f} s (0: cached); ours {ours_seconds:.0f} s, published "
          f"{published_seconds:.0f} s for {len(seeds)} seeds; total {time.time() - total:.0f} s; table: {args.out}")


if __name__ == "__main__":
    main()
