"""DeepSEM (``genecompass.tasks.grn.deepsem``) on BEELINE mESC and mDC, run and scored as DeepSEM's paper did.

DeepSEM is published as scripts that hard-code CUDA, not as a package, so
there is no published side to run here (README, "Fidelity"). This bench runs
ours the way the paper's Fig. 2 was made, so that its figures can be set
beside the paper's:

* data: BEELINE's ``ExpressionData.csv`` (TFs + 500 or 1000 most variable
  genes) and its ground-truth networks, ``../shared/data/beeline``;
* two DeepSEM tasks, as in the released code: the cell-type non-specific one
  (z-score over all cells, full reconstruction error) for the STRING and
  non-specific ChIP-seq networks, the cell-type-specific one (z-score of the
  non-zero values, clipped at ±10, reconstruction error on the non-zero
  entries) for the cell-type-specific ChIP-seq and lof/gof networks;
* settings: ``--settings paper`` (default) are those the released
  ``Hyperparameter.MD`` gives for reproducing Fig. 2 and Supp. Fig. 1
  (non-specific α 100, β 1, 90 epochs; cell-type-specific α 1, β 0.1,
  150 epochs for mESC and mDC), ``--settings main`` the released ``main.py``
  defaults (120 epochs; α 10, β 0.1 for the specific task); both with the
  rest of ``DeepSEMConfig.released`` (lr 1e-4, batch 64, hidden 128, W at
  1/(m−1) + U(0, 2e-4), the MLP learning rate × 0.95 per epoch as under the
  torch 1.2 the code pins);
* ensemble: ``--runs`` trainings (the paper: 10), |W| averaged;
* scoring: ``genecompass.tasks.grn.beeline.evaluate_edges`` with
  ``candidates="ground_truth"``, DeepSEM's own protocol (sources: the
  network's regulators, targets: the network's genes, no self-edges; EPR =
  precision in the top k = number of true edges over the density; AUPRC
  ratio = AUPRC over the density), and with ``candidates="expression"``, the
  workflow's (every expressed TF × every gene); beside a random ranking.

The table gives per dataset and network: EPR and AUPRC ratio of the
ensemble, the single runs' mean ± sd, and the random ranking's.

    python bench/fidelity_deepsem.py --runs 10            # the paper's ensemble
    python bench/fidelity_deepsem.py --runs 3 --datasets mESC/TFs500 mDC/TFs500

The paper reports these figures only in heat maps (Fig. 2, Supp. Fig. 1) of a
paywalled article; no copy or table of them is available offline, so they are
not printed here (README, "Fidelity"). A benchmark, not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from genecompass.tasks.grn import beeline, deepsem  # noqa: E402

BEELINE = REPO.parent / "shared" / "data" / "beeline"
FIDELITY = REPO / "bench" / ".fidelity"
DATASETS = ("mESC/TFs500", "mDC/TFs500", "mDC/TFs1000")
# Which released DeepSEM task the paper ran for each BEELINE network.
NETWORK_TASK = {"STRING": "non_specific", "Non-Specific": "non_specific", "Specific": "cell_type_specific",
                "Lofgof": "cell_type_specific"}
# Hyperparameter.MD (HantaoShu/DeepSEM): the settings that reproduce Fig. 2 / Supp. Fig. 1 (mESC, mDC: "others").
PAPER = {"non_specific": {"alpha": 100.0, "beta": 1.0, "n_epochs": 90},
         "cell_type_specific": {"alpha": 1.0, "beta": 0.1, "n_epochs": 150}}


def log(message: str) -> None:
    print(f"[fidelity_deepsem {time.strftime('%H:%M:%S')}] {message}", flush=True)


def task_config(task: str, settings: str, epochs: int | None) -> deepsem.DeepSEMConfig:
    overrides = dict(PAPER[task]) if settings == "paper" else {}
    if epochs is not None:
        overrides["n_epochs"] = epochs
    return deepsem.DeepSEMConfig.released(cell_type_specific=task == "cell_type_specific", **overrides)


def networks_of(folder: Path) -> dict[str, pd.DataFrame]:
    found = {}
    for name in NETWORK_TASK:
        path = folder / f"{name}-network.csv"
        if path.is_file():
            found[name] = beeline.read_network(path)
    if not found:
        raise SystemExit(f"{folder}: no <network>-network.csv among {sorted(NETWORK_TASK)}")
    return found


def score(weights: np.ndarray, genes: list[str], network: pd.DataFrame, tfs: list[str]) -> dict:
    edges = beeline.edges_from_matrix(weights, genes, genes, absolute=True)
    paper = beeline.evaluate_edges(edges, network, genes, candidates="ground_truth")
    ours = beeline.evaluate_edges(edges, network, genes, tfs=tfs, candidates="expression")
    return {"epr": paper["epr"], "auprc_ratio": paper["auprc_ratio"], "n_true": paper["n_true"],
            "n_candidates": paper["n_candidates"], "epr_workflow": ours["epr"],
            "auprc_ratio_workflow": ours["auprc_ratio"]}


def run_dataset(name: str, beeline_dir: Path, tfs: list[str], runs: int, settings: str,
                epochs: int | None, device: str) -> list[dict]:
    folder = beeline_dir / name
    expression = beeline.read_expression(beeline.find_expression_file(folder))
    genes = [str(gene) for gene in expression.index]
    networks = networks_of(folder)
    log(f"{name}: {len(genes)} genes x {expression.shape[1]} cells; networks {sorted(networks)}")
    rows = []
    for task in sorted({NETWORK_TASK[network] for network in networks}):
        config = task_config(task, settings, epochs)
        single = []
        started = time.time()
        for run in range(runs):
            t0 = time.time()
            single.append(deepsem.train_deepsem(expression, config, seed=run, device=device).weights)
            log(f"{name} {task} run {run}: {time.time() - t0:.0f} s")
        seconds = (time.time() - started) / runs
        ensemble = np.mean([np.abs(weights) for weights in single], axis=0)
        for network_name, network in networks.items():
            if NETWORK_TASK[network_name] != task:
                continue
            per_run = [score(weights, genes, network, tfs) for weights in single]
            whole = score(ensemble, genes, network, tfs)
            chance = [score(_random_matrix(len(genes), seed), genes, network, tfs) for seed in range(5)]
            row = {"dataset": name, "network": network_name, "task": task, "runs": runs,
                   "alpha": config.alpha, "beta": config.beta, "epochs": config.n_epochs,
                   "seconds_per_run": round(seconds, 1), "n_true": whole["n_true"],
                   "n_candidates": whole["n_candidates"]}
            for metric in ("epr", "auprc_ratio", "epr_workflow", "auprc_ratio_workflow"):
                values = [result[metric] for result in per_run]
                row[f"{metric}_ensemble"] = whole[metric]
                row[f"{metric}_runs_mean"] = float(np.mean(values))
                row[f"{metric}_runs_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
                row[f"{metric}_random"] = float(np.mean([result[metric] for result in chance]))
            rows.append(row)
            log(f"{name} {network_name}: EPR {whole['epr']:.2f} (random {row['epr_random']:.2f}), "
                f"AUPRC ratio {whole['auprc_ratio']:.2f}")
    return rows


def _random_matrix(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, n))


def print_table(table: pd.DataFrame) -> None:
    def cell(row, metric):
        spread = f" ({row[f'{metric}_runs_mean']:.2f} ± {row[f'{metric}_runs_sd']:.2f})" if row["runs"] > 1 else ""
        return f"{row[f'{metric}_ensemble']:.2f}{spread}"

    print("| data | network | task | EPR, ensemble (runs mean ± sd) | random | AUPRC ratio, ensemble "
          "(runs mean ± sd) | random | EPR, workflow candidates | AUPRC ratio, workflow candidates |")
    print("|---|---|---|---|---|---|---|---|---|")
    for _, row in table.iterrows():
        print(f"| {row['dataset']} | {row['network']} | {row['task']} | {cell(row, 'epr')} | "
              f"{row['epr_random']:.2f} | {cell(row, 'auprc_ratio')} | {row['auprc_ratio_random']:.2f} | "
              f"{row['epr_workflow_ensemble']:.2f} | {row['auprc_ratio_workflow_ensemble']:.2f} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beeline", type=Path, default=BEELINE, help="BEELINE data folder (default: %(default)s)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), help="<cell type>/<gene set> folders")
    parser.add_argument("--runs", type=int, default=10, help="ensemble size (the paper: 10)")
    parser.add_argument("--settings", choices=("paper", "main"), default="paper",
                        help="Hyperparameter.MD's Fig. 2 settings (default) or main.py's defaults")
    parser.add_argument("--epochs", type=int, default=None, help="smoke test only: train this many epochs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=FIDELITY / "deepsem_fidelity.tsv", help="the table as TSV")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    torch.set_num_threads(args.threads)
    tfs = beeline.read_tf_list(args.beeline / "mouse-tfs.csv")
    rows = []
    for name in args.datasets:
        rows += run_dataset(name, args.beeline, tfs, args.runs, args.settings, args.epochs, args.device)
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, sep="\t", index=False)
    log(f"table written to {args.out}")
    print_table(table)


if __name__ == "__main__":
    main()
