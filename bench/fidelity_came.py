"""Fidelity of our CAME (``genecompass.tasks.came``) against the published ``came`` 0.1.13, same data.

For each dataset (real Baron pancreas mouse -> human from ``config/real.yaml``;
the demo pair from ``config/config.yaml`` and a finished demo run) the script

1. builds the inputs our ``came`` rule uses: the QC'd reference and query
   samples (for Baron, ``genecompass.qc.qc_sample`` with the real config's QC
   settings and gene tables, cached under ``bench/.fidelity/came_inputs``; for
   the demo, the run's ``results/qc/*.h5ad``), the homology table of the token
   dictionary's homologous tokens (Baron: built with
   ``genecompass.dictionary.build_dictionary`` from ``references.orthologs``
   and the config's ``tokens`` policy; demo: the run's
   ``results/tokens/dictionary.tsv``) and the reference labels;
2. runs ours in this interpreter (``run.join_samples`` -> ``run_came_task``,
   method ``came``) and exports the same cells (raw counts), the same homology
   table and the same reference labels to the published package, which runs
   in an isolated venv (``bench/.fidelity/came_venv``, built once, git-ignored,
   pinned: see ``PINS``) through its own cross-species pipeline
   (``came.pipeline.preprocess_unaligned`` + ``main_for_unaligned``), as its
   README's cross-species example does; the query goes in without labels on
   both sides (CAME then selects the checkpoint by the AMI against its Leiden
   pre-clusters, as ours does);
3. scores both sides' query predictions with the same code (sklearn accuracy,
   macro-F1 over the union of true and predicted labels, AMI) after the same
   label matching (``genecompass.tasks.came.labels.match_labels``: the query's
   labels in the reference's spelling; query-only types count as errors);
4. prints one table per dataset (metric, ours mean ± sd, published mean ± sd,
   difference, `*` where it exceeds the sum of the two sds; sd over seeds, ddof = 1) and writes them to
   ``--out`` (TSV).

Both sides use CAME 0.1.13's published defaults: 2,000 HVGs and 50 DEGs per
group, 350 epochs with checkpoints from epoch 100 (``n_pass``), Adam lr 5e-4
(``Trainer``'s default; the pipeline passes none) and weight decay 1e-2, one
forward pass per epoch (R-drop is commented out in 0.1.13), additive GAT
attention (``PARAMETERS._params_model``: ``attn_type='add'``), the best-AMI
checkpoint (exact maximum, later ties win). ``--ours library`` instead runs
ours with ``CameConfig.came_defaults()`` (what our library calls CAME's
defaults) to show what those differences cost.

Nothing of the published package is copied here: it is installed and called.

    python bench/fidelity_came.py --seeds 3 --demo-results /work/demo_final/results   # Baron: 300 + 300 cells
    python bench/fidelity_came.py --datasets baron --max-cells none                   # all 1,878 + 2,134 cells

CPU only; the published venv pulls torch 2.2.1 from PyPI (with its CUDA
wheels, ~4 GB) because DGL 2.1.0 ships its graph library for torch
2.0.0-2.2.1 only. A benchmark, not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fidelity_venv import add_shared_options, beyond_seed_spread, ensure_venv, venv_python  # bench/, beside this script

if TYPE_CHECKING:  # the worker runs in the published venv: keep module-level imports to the stdlib
    import pandas as pd

REPO = Path(__file__).resolve().parents[1]
FIDELITY = REPO / "bench" / ".fidelity"
PINS = [
    "torch==2.2.1", "dgl==2.1.0", "came==0.1.13",
    # what dgl 2.1.0 imports but does not declare; torchdata >= 0.8 dropped ``datapipes``
    "torchdata==0.7.1", "pydantic==2.14.4",
    # scanpy's Leiden (CAME's pre-clustering) needs leidenalg
    "leidenalg==0.12.0", "igraph==1.0.0",
    "numpy==1.26.4", "scipy==1.17.1", "pandas==2.3.3", "scanpy==1.11.5", "anndata==0.12.19",
    "scikit-learn==1.9.1", "h5py==3.16.0", "umap-learn==0.5.12", "pynndescent==0.7.0", "numba==0.68.1",
    "matplotlib==3.11.2", "seaborn==0.13.2", "statsmodels==0.15.0", "networkx==3.6.1",
]
# CAME 0.1.13's defaults (pipeline.main_for_unaligned, utils.train.Trainer/train, PARAMETERS.py).
PUBLISHED = {"n_epochs": 350, "n_pass": 100, "n_top_genes": 2000, "n_degs": 50}
OURS_PUBLISHED = {"n_epochs": 350, "select_from_epoch": 99, "lr": 5e-4, "weight_decay": 1e-2, "forward_passes": 1,
                  "attention": "add", "ami_tolerance": 0.0}
METRICS = ("accuracy", "macro_f1", "ami")


def log(message: str) -> None:
    print(f"[fidelity_came {time.strftime('%H:%M:%S')}] {message}", flush=True)


def ensure_came_venv(venv: Path, rebuild: bool) -> float:
    """The pinned venv of ``came`` (once; torch 2.2.1 from PyPI, several GB)."""
    return ensure_venv(venv, [PINS], "import dgl, came, torch; print('torch', torch.__version__, 'dgl', "
                       "dgl.__version__, 'came', came.__version__)", rebuild=rebuild, env={"DGLBACKEND": "pytorch"},
                       log=log)


# --------------------------------------------------------------------------- inputs (our interpreter)


def read_config(*paths: Path) -> dict:
    """The workflow's config files layered as Snakemake does (later maps merged into earlier ones)."""
    import yaml

    def merge(base, extra):
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value
        return base

    config: dict = {}
    for path in paths:
        merge(config, yaml.safe_load(path.read_text()))
    return config


def _repo_path(value) -> Path:
    path = Path(value)
    return path if path.is_absolute() else (REPO / path).resolve()


def baron_inputs(cache: Path) -> dict:
    """QC'd Baron samples and the homology dictionary of the real config, built with our library (cached)."""
    import pandas as pd

    from genecompass.dictionary import build_dictionary, read_dictionary, write_dictionary
    from genecompass.genes import read_gene_table, read_orthologs
    from genecompass.qc import QCParams, qc_sample

    config = read_config(REPO / "config" / "config.yaml", REPO / "config" / "real.yaml")
    pair = config["tasks"]["came"]["pairs"][0]
    refs = config["references"]
    sheet = pd.read_csv(_repo_path(config["samples"]), sep="\t", dtype=str, keep_default_na=False).set_index("sample")
    cache.mkdir(parents=True, exist_ok=True)
    dictionary = cache / "dictionary.tsv"
    if not dictionary.exists():
        log("building the token dictionary of config/real.yaml (references.orthologs, tokens.homology_policy)")
        table = build_dictionary(read_gene_table(_repo_path(refs["human_genes"]), "human"),
                                 read_gene_table(_repo_path(refs["mouse_genes"]), "mouse"),
                                 read_orthologs(_repo_path(refs["orthologs"])),
                                 policy=config["tokens"]["homology_policy"],
                                 core_biotypes=tuple(config["qc"]["core_biotypes"]),
                                 min_confidence=config["tokens"].get("min_ortholog_confidence"))
        write_dictionary(table, dictionary, cache / "dictionary_summary.json")
    files = {}
    for sample in pair["reference"] + pair["query"]:
        row = sheet.loc[sample]
        out = cache / f"{sample}.h5ad"
        if not out.exists():
            log(f"QC of {sample} (config/real.yaml qc settings)")
            species = row["species"]
            qc_sample(counts_path=_repo_path(row["path"]), fmt=row["format"], genome=row.get("genome") or None,
                      species=species, sample=sample,
                      gene_table_path=_repo_path(refs[f"{species}_genes"]),
                      hgnc_path=_repo_path(refs["gene_groups"]) if species == "human" and refs.get("gene_groups")
                      else None,
                      counts=row.get("counts") or None, gene_column=row.get("gene_column") or None,
                      params=QCParams.from_dict(config["qc"]), out_h5ad=out,
                      out_filters=cache / f"{sample}.filters.tsv", out_gene_report=cache / f"{sample}.gene_ids.json",
                      out_figure=cache / f"{sample}.qc.png")
        files[sample] = out
    return {"name": pair["name"], "pair": pair, "files": files, "dictionary": read_dictionary(dictionary),
            "species": {side: sheet.loc[pair[side][0], "species"] for side in ("reference", "query")}}


def demo_inputs(results: Path) -> dict:
    import pandas as pd

    from genecompass.dictionary import read_dictionary

    config = read_config(REPO / "config" / "config.yaml")
    pair = config["tasks"]["came"]["pairs"][0]
    sheet = pd.read_csv(_repo_path(config["samples"]), sep="\t", dtype=str, keep_default_na=False).set_index("sample")
    files = {s: results / "qc" / f"{s}.h5ad" for s in pair["reference"] + pair["query"]}
    missing = [str(p) for p in [*files.values(), results / "tokens" / "dictionary.tsv"] if not p.exists()]
    if missing:
        raise SystemExit(f"the demo run at {results} lacks {missing}: run the demo workflow first or pass "
                         "--demo-results")
    return {"name": pair["name"], "pair": pair, "files": files,
            "dictionary": read_dictionary(results / "tokens" / "dictionary.tsv"),
            "species": {side: sheet.loc[pair[side][0], "species"] for side in ("reference", "query")}}


def prepare(dataset: dict, export: Path, max_cells: int | None = None) -> dict:
    """What our rule hands to CAME (log-normalised sides, homology, renamed query truth) + the export for the
    published package (raw counts of the same cells, the same homology table, reference labels only)."""
    import anndata as ad

    from genecompass.tasks.came.labels import match_labels
    from genecompass.tasks.came.run import homology_from_dictionary, join_samples

    pair, label = dataset["pair"], dataset["pair"]["label_column"]
    raw = {side: {s: ad.read_h5ad(dataset["files"][s]) for s in pair[side]} for side in ("reference", "query")}
    reference = join_samples({s: a.copy() for s, a in raw["reference"].items()}, label, "reference")
    query = join_samples({s: a.copy() for s, a in raw["query"].items()}, None, "query")
    truth, report = match_labels(reference.obs[label], query.obs[label], dataset["pair"].get("label_map"))
    query.obs[label] = truth
    counts = {side: ad.concat(raw[side], join="outer", label="sample", index_unique="::", fill_value=0)
              for side in ("reference", "query")}
    if max_cells:  # the same random cells (fixed seed) for both sides of the comparison
        import numpy as np

        rng = np.random.default_rng(0)
        for side, normalised in (("reference", reference), ("query", query)):
            if normalised.n_obs > max_cells:
                keep = np.sort(rng.choice(normalised.n_obs, size=max_cells, replace=False))
                counts[side] = counts[side][keep].copy()
                if side == "reference":
                    reference = reference[keep].copy()
                else:
                    query = query[keep].copy()
                    truth = np.asarray(truth)[keep]
    homology = homology_from_dictionary(dataset["dictionary"], dataset["species"]["reference"],
                                        dataset["species"]["query"])
    export.mkdir(parents=True, exist_ok=True)
    for side, normalised in (("reference", reference), ("query", query)):
        assert list(counts[side].obs_names) == list(normalised.obs_names)
        out = ad.AnnData(counts[side].X.astype("float32"), obs=counts[side].obs[[]].copy(),
                         var=counts[side].var[[]].copy())
        if side == "reference":
            out.obs["cell_type"] = reference.obs[label].astype(str).to_numpy()
        out.write_h5ad(export / f"{side}.h5ad")
    homology.to_csv(export / "homology.tsv", sep="\t", index=False)
    return {"reference": reference, "query": query, "homology": homology, "truth": truth, "labels": report,
            "label": label}


# --------------------------------------------------------------------------- the two sides


def run_ours(prepared: dict, seeds: list[int], variant: str) -> dict:
    from genecompass.tasks.came.model import CameConfig, config_dict
    from genecompass.tasks.came.run import run_came_task

    if variant == "library":
        epochs = {key: OURS_PUBLISHED[key] for key in ("n_epochs", "select_from_epoch")}
        settings = config_dict(CameConfig.came_defaults(**epochs))
    else:
        settings = dict(OURS_PUBLISHED)
    runs, _ = run_came_task(prepared["reference"], prepared["query"], prepared["homology"], prepared["label"],
                            "came", seeds, settings=settings, n_top_genes=PUBLISHED["n_top_genes"],
                            n_degs=PUBLISHED["n_degs"], device="cpu")
    cells = [str(c) for c in prepared["query"].obs_names]
    predictions, info = {}, {}
    for result in runs.results:
        assert list(result.query_cells) == cells
        predictions[result.seed] = list(result.predictions)
        info[result.seed] = {"selected_epoch": result.selected_epoch}
    return {"predictions": predictions, "info": info, "settings": settings}


def worker(export: Path, work: Path, seeds: list[int], defaults: dict) -> None:
    """Inside the published venv: CAME 0.1.13's cross-species pipeline, one training run per seed."""
    import logging

    import pandas as pd
    import scanpy as sc
    import torch
    from came import pipeline
    from came.utils.train import seed_everything

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    started = time.time()
    reference, query = sc.read_h5ad(export / "reference.h5ad"), sc.read_h5ad(export / "query.h5ad")
    homology = pd.read_csv(export / "homology.tsv", sep="\t", dtype=str)
    seed_everything(0)
    came_inputs, _ = pipeline.preprocess_unaligned([reference, query], key_class="cell_type",
                                                   ntop_deg=defaults["n_degs"], ntop_deg_nodes=defaults["n_degs"],
                                                   node_source="hvg,deg")
    adatas = came_inputs.pop("adatas")
    summary = {"n_feature_genes": [len(v) for v in came_inputs["vars_feat"]],
               "n_node_genes": [len(v) for v in came_inputs["vars_as_nodes"]],
               "n_query_clusters": int(adatas[1].obs["clust_lbs"].nunique()), "seeds": {}}
    for seed in seeds:
        seed_everything(seed)
        start = time.time()
        outputs = pipeline.main_for_unaligned(
            adatas=[a.copy() for a in adatas],  # it normalises its inputs in place
            **came_inputs, df_varmap=homology, df_varmap_1v1=homology, dataset_names=("reference", "query"),
            key_class1="cell_type", key_class2=None, do_normalize=True, n_epochs=defaults["n_epochs"],
            n_pass=defaults["n_pass"], resdir=work / f"seed{seed}", plot_results=False,
            save_hidden_list=False, save_dpair=False)
        dpair, trainer = outputs["dpair"], outputs["trainer"]
        probs = outputs["df_probs"]
        query_rows = [int(i) for i in dpair.obs_ids2]
        predicted = probs.iloc[query_rows].idxmax(axis=1).astype(str).tolist()
        pd.DataFrame({"cell": [str(c) for c in query.obs_names], "predicted": predicted}).to_csv(
            work / f"predictions_seed{seed}.tsv", sep="\t", index=False)
        summary["seeds"][seed] = {"selected_epoch": int(trainer._cur_epoch_adopted), "seconds": time.time() - start,
                                  "graph": str(trainer.g).replace("\n", " ")}
        summary["total_seconds"] = time.time() - started  # import, preprocessing and every seed so far
        (work / "summary.json").write_text(json.dumps(summary, indent=1))


def start_published(venv: Path, export: Path, work: Path, seeds: list[int]):
    """Start the published run in its venv (a subprocess, so that it trains while ours does)."""
    work.mkdir(parents=True, exist_ok=True)
    cmd = [str(venv_python(venv)), str(Path(__file__).resolve()), "--worker", str(export), "--work", str(work),
           "--seed-list", *map(str, seeds), "--defaults", json.dumps(PUBLISHED)]
    env = {**os.environ, "DGLBACKEND": "pytorch", "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    handle = open(work / "worker.log", "w")
    return subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=work), handle


def finish_published(started, work: Path, seeds: list[int], cells: list[str]) -> dict:
    import pandas as pd

    process, handle = started
    returncode = process.wait()
    handle.close()
    if returncode:
        tail = (work / "worker.log").read_text().splitlines()[-30:]
        raise SystemExit("the published CAME run failed:\n" + "\n".join(tail))
    predictions = {}
    for seed in seeds:
        frame = pd.read_csv(work / f"predictions_seed{seed}.tsv", sep="\t", dtype=str, keep_default_na=False)
        assert frame["cell"].tolist() == cells
        predictions[seed] = frame["predicted"].tolist()
    summary = json.loads((work / "summary.json").read_text())
    return {"predictions": predictions, "info": summary}


# --------------------------------------------------------------------------- scoring


def scores(truth, predictions: dict) -> pd.DataFrame:
    """Per seed: accuracy, macro-F1 (union of true and predicted labels), AMI; the same code for both sides."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import accuracy_score, adjusted_mutual_info_score, f1_score

    truth = np.asarray(truth, dtype=object).astype(str)
    rows = []
    for seed, predicted in sorted(predictions.items()):
        predicted = np.asarray(predicted, dtype=object).astype(str)
        rows.append({"seed": seed, "accuracy": accuracy_score(truth, predicted),
                     "macro_f1": f1_score(truth, predicted, average="macro", zero_division=0),
                     "ami": adjusted_mutual_info_score(truth, predicted)})
    return pd.DataFrame(rows)


def fidelity_table(dataset: str, ours, published) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for metric in METRICS:
        o, p = ours[metric], published[metric]
        sd_o, sd_p = (o.std(ddof=1) if len(o) > 1 else 0.0), (p.std(ddof=1) if len(p) > 1 else 0.0)
        diff = o.mean() - p.mean()
        rows.append({"dataset": dataset, "metric": metric, "ours_mean": o.mean(), "ours_sd": sd_o,
                     "published_mean": p.mean(), "published_sd": sd_p, "difference": diff,
                     "beyond_seed_spread": beyond_seed_spread(diff, sd_o, sd_p), "n_seeds": len(o)})
    return pd.DataFrame(rows)


def print_table(table, header: str) -> None:
    print(f"\n{header}")
    print(f"{'metric':<10} {'ours (mean ± sd)':>18} {'published (mean ± sd)':>22} {'difference':>11}")
    for row in table.itertuples():
        flag = "  *" if row.beyond_seed_spread else ""
        print(f"{row.metric:<10} {row.ours_mean:>10.4f} ± {row.ours_sd:.4f} {row.published_mean:>14.4f} ± "
              f"{row.published_sd:.4f} {row.difference:>+11.4f}{flag}")
    print("(* difference larger than the sum of the two seed sds, as in bench/fidelity_gears.py)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", choices=("baron", "demo"), default=["baron", "demo"])
    parser.add_argument("--demo-results", type=Path, default=REPO / "results",
                        help="a finished demo run's results folder (qc/*.h5ad, tokens/dictionary.tsv)")
    add_shared_options(parser, FIDELITY / "came_venv")
    parser.add_argument("--ours", choices=("published", "library"), default="published",
                        help="our settings: CAME 0.1.13's published defaults (default) or "
                             "CameConfig.came_defaults()")
    parser.add_argument("--out", type=Path, default=FIDELITY / "came_fidelity.tsv", help="the tables as TSV")
    parser.add_argument("--scratch", type=Path, default=FIDELITY / "came_work")
    parser.add_argument("--max-cells", nargs="*", default=["baron=300"], metavar="DATASET=N",
                        help="subsample each side of DATASET to at most N cells, the same cells for both "
                             "implementations (default: baron=300, to keep the CPU run short; none: all cells)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="smoke test only: train this many epochs (checkpoints from a third of them)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed-list", type=int, nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--defaults", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.work, args.seed_list, json.loads(args.defaults))
        return
    args.max_cells = {k: int(v) for k, v in (item.split("=") for item in args.max_cells if item != "none")}

    import pandas as pd

    if args.epochs:
        PUBLISHED.update(n_epochs=args.epochs, n_pass=max(1, args.epochs // 3))
        OURS_PUBLISHED.update(n_epochs=args.epochs, select_from_epoch=max(1, args.epochs // 3) - 1)
    start = time.time()
    build_seconds = ensure_came_venv(args.venv, args.rebuild_venv)
    seeds = list(range(args.seeds))
    tables, timings = [], {}
    for name in args.datasets:
        dataset = baron_inputs(FIDELITY / "came_inputs" / "baron") if name == "baron" else \
            demo_inputs(args.demo_results.resolve())
        scratch = args.scratch / name
        prepared = prepare(dataset, scratch / "export", args.max_cells.get(name))
        truth = prepared["truth"]
        cells = [str(c) for c in prepared["query"].obs_names]
        log(f"{name}: {prepared['reference'].n_obs} reference x {prepared['query'].n_obs} query cells, "
            f"{len(prepared['homology'])} homology pairs; labels {json.dumps(prepared['labels'])}")
        t0 = time.time()
        started = start_published(args.venv, scratch / "export", scratch / "published", seeds)
        ours = run_ours(prepared, seeds, args.ours)
        t1 = time.time()
        published = finish_published(started, scratch / "published", seeds, cells)
        t2 = time.time()
        timings[name] = {"ours_s": t1 - t0, "published_s": published["info"].get("total_seconds", t2 - t0)}
        log(f"{name}: ours {t1 - t0:.0f} s ({ours['info']}), published {timings[name]['published_s']:.0f} s "
            "(the two run at the same time, each on one thread) "
            f"({json.dumps(published['info'])})")
        ours_scores, published_scores = scores(truth, ours["predictions"]), scores(truth, published["predictions"])
        per_seed = pd.concat([ours_scores.assign(side="ours"), published_scores.assign(side="published")])
        per_seed.to_csv(scratch / "per_seed.tsv", sep="\t", index=False)
        table = fidelity_table(dataset["name"], ours_scores, published_scores)
        tables.append(table)
        sampled = (f"random subsample of at most {args.max_cells[name]} cells per side, numpy seed 0, the same "
                   f"cells on both sides" if args.max_cells.get(name) else "all cells, no subsampling")
        header = (f"CAME fidelity: {dataset['name']} ({prepared['reference'].n_obs} reference, "
                  f"{prepared['query'].n_obs} query cells: {sampled}; seeds {seeds}; "
                  f"{PUBLISHED['n_epochs']} epochs; "
                  f"ours = genecompass.tasks.came ({args.ours} settings), published = came 0.1.13)")
        print_table(table, header)
    out = pd.concat(tables)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.out, sep="\t", index=False, float_format="%.4f")
    log(f"tables written to {args.out}; venv build {build_seconds:.0f} s (0: cached); "
        f"timings {json.dumps({k: {kk: round(vv) for kk, vv in v.items()} for k, v in timings.items()})}; "
        f"total {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
