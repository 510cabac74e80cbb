"""Benchmark of the workflow's DAG construction (``snakemake -n``) against the number of samples.

The per-sample rules (qc, coexpression pairs, gene histogram, tokenize, one
embedding per model variant, cell embeddings) must make planning linear in the
number of samples: an input function, parameter or wildcard constraint that
walks the whole sample sheet for every per-sample job makes it quadratic, and
10,000 samples then take hours to plan instead of minutes.

In a temporary folder (``--workdir`` to keep it), for each N of ``--sizes``:

* writes a sample sheet of N rows in the layout of config/samples.tsv
  (sample, species, path, format, genome): human and mouse alternate, so both
  species' branches of the DAG are planned; names are ``human_s1, mouse_s1,
  human_s2, ...``, so the demo config's tasks (which name human_s1, human_s2
  and mouse_s1) still find their samples; formats cycle through h5ad, 10x_h5
  and 10x_mtx. The count paths are empty placeholder files (and folders for
  10x_mtx), relative to the run folder as the demo's are: Snakemake needs every
  input that no rule writes to exist, and a dry run never reads them;
* times one ``python -m snakemake -n --quiet rules`` subprocess (wall clock,
  plus its peak memory) of the default target (rule ``all``) with
  ``--snakefile`` (this repository's), ``--directory`` (the temporary folder),
  ``--configfile`` (config/config.yaml) and ``--config samples=<sheet>``;
  ``--quiet rules`` prints the "Job stats" table, whose total gives the
  planned jobs, without a block per job (``--print-jobs``: plain ``-n``, the
  terminal output of every job included);
* first the same on a sheet of the 4 smallest names (``--baseline``): the
  fixed cost (imports, parsing, the ~80 sample-independent jobs), subtracted
  to give the DAG time that grows with N.

* the reference (``--no-reference`` to skip): Snakemake's own cost per job, the floor no workflow
  can beat. A bare Snakefile (written by this script, :data:`REFERENCE_SNAKEFILE`) reads the same
  sheet with plain pandas and plans the same per-sample DAG shape as ours, with the same directives (script, log,
  benchmark, threads, resources, params) (per sample: qc,
  co-expression, histogram, tokens, one embedding per model variant, cell embeddings; the
  aggregates over all samples: QC summary, medians, corpus, knowledge, models, gene embeddings,
  embedding analysis) plus sample-independent filler jobs, so that it plans exactly as many jobs as
  ours at every N. Its input functions do nothing but format a path. Timed in the same run, right
  after ours on the same sheet; the ratio ours / reference at the largest N is the figure (target:
  at most 1.3).

Prints, per N: planned jobs, seconds, DAG seconds (minus the baseline),
seconds per 1,000 jobs and peak memory; then time(N_max) / time(N_min)
against N_max / N_min and the log-log slope (least squares) of time against N,
raw and minus the baseline. Linear planning gives an exponent near 1,
quadratic near 2. PASS when the exponent (of the DAG time, which a fixed cost
cannot flatten; the raw one is lower) is below 1.5; ``--check`` exits 1 on
FAIL. A run longer than ``--timeout`` seconds is stopped, the larger sizes
are skipped, and the result is FAIL.

    python bench/bench_dag.py                              # 1,000 / 2,500 / 5,000 / 10,000 samples
    python bench/bench_dag.py --sizes 200 400 800          # quick
    python bench/bench_dag.py --sizes 10000 --check        # the figure of 10,000 samples, and its ratio
    python bench/bench_dag.py --snakefile /tmp/copy/Snakefile   # another checkout of the workflow
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FORMATS = (("h5ad", ".h5ad"), ("10x_h5", ".h5"), ("10x_mtx", ""))
BASELINE_SAMPLES = 4
EXPONENT_LIMIT = 1.5
REFERENCE_RATIO_LIMIT = 1.3

# Per-sample DAG shape of the workflow, with input functions that only format paths. Config keys:
# samples (the sheet), variants (model variants, the first the main one), filler (sample-independent
# jobs that make the total equal the workflow's).
REFERENCE_SNAKEFILE = r"""
import pandas as pd

SAMPLES = pd.read_csv(config["samples"], sep="\\t", dtype=str).set_index("sample", drop=False)
SPECIES = dict(zip(SAMPLES["sample"], SAMPLES["species"]))
PATHS = dict(zip(SAMPLES["sample"], SAMPLES["path"]))
VARIANTS = str(config["variants"]).split(",")
FILLER = int(config["filler"])


def counts(wildcards):
    return PATHS[wildcards.sample]


def species(wildcards):
    return SPECIES[wildcards.sample]


def per_sample(pattern, **wildcards):
    return [pattern.format(sample=sample, **wildcards) for sample in SAMPLES.index]


rule all:
    input:
        "qc/summary.txt",
        "corpus/done.txt",
        "analysis.txt",
        expand("genes/{variant}.txt", variant=VARIANTS),
        per_sample("cells/{sample}.txt"),
        expand("filler/{i}.txt", i=range(FILLER)),


rule qc:
    input: counts
    output: "qc/{sample}.txt"
    params: species=species, seed=config.get("seed", 0)
    log: "logs/qc/{sample}.log"
    benchmark: "benchmarks/qc/{sample}.tsv"
    threads: 1
    resources: mem_mb=2000, runtime=30
    script: "noop.py"


rule coexpression:
    input: "qc/{sample}.txt"
    output: "coexpression/{sample}.txt"
    params: species=species, seed=config.get("seed", 0)
    log: "logs/coexpression/{sample}.log"
    benchmark: "benchmarks/coexpression/{sample}.tsv"
    threads: 1
    resources: mem_mb=2000, runtime=30
    script: "noop.py"


rule histogram:
    input: "qc/{sample}.txt"
    output: "histograms/{sample}.txt"
    params: species=species, seed=config.get("seed", 0)
    log: "logs/histograms/{sample}.log"
    benchmark: "benchmarks/histograms/{sample}.tsv"
    threads: 1
    resources: mem_mb=2000, runtime=30
    script: "noop.py"


rule tokenize:
    input: "qc/{sample}.txt", "medians.txt"
    output: "shards/{sample}.txt"
    params: species=species, seed=config.get("seed", 0)
    log: "logs/shards/{sample}.log"
    benchmark: "benchmarks/shards/{sample}.tsv"
    threads: 1
    resources: mem_mb=2000, runtime=30
    script: "noop.py"


rule embed:
    input: "models/{variant}.txt", "shards/{sample}.txt", "qc/{sample}.txt"
    output: "embeddings/{variant}/{sample}.txt"
    params: species=species, seed=config.get("seed", 0)
    log: "logs/embeddings/{variant}/{sample}.log"
    benchmark: "benchmarks/embeddings/{variant}/{sample}.tsv"
    threads: 1
    resources: mem_mb=2000, runtime=30
    script: "noop.py"


rule cells:
    input: lambda wildcards: f"embeddings/{VARIANTS[0]}/{wildcards.sample}.txt", "qc/{sample}.txt"
    output: "cells/{sample}.txt"
    params: species=species, seed=config.get("seed", 0)
    log: "logs/cells/{sample}.log"
    benchmark: "benchmarks/cells/{sample}.tsv"
    threads: 1
    resources: mem_mb=2000, runtime=30
    script: "noop.py"


rule qc_summary:
    input: per_sample("qc/{sample}.txt")
    output: "qc/summary.txt"
    log: "logs/qc/summary.log"
    benchmark: "benchmarks/qc/summary.tsv"
    threads: 1
    resources: mem_mb=2000, runtime=30
    script: "noop.py"


rule knowledge:
    input: per_sample("coexpression/{sample}.txt")
    output: "knowledge.txt"
    log: "logs/knowledge.log"
    benchmark: "benchmarks/knowledge.tsv"
    threads: 1
    resources: mem_mb=2000, runtime=30
    script: "noop.py"


rule medians:
    input: per_sample("histograms/{sample}.txt")
    output: "medians.txt"
    log: "logs/medians.log"
    benchmark: "benchmarks/medians.tsv"
    threads: 1
    resources: mem_mb=2000, runtime=30
    script: "noop.py"


rule corpus:
    input: per_sample("shards/{sample}.txt")
    output: "corpus/done.txt"
    log: "logs/corpus/done.log"
    benchmark: "benchmarks/corpus/done.tsv"
    threads: 1
    resources: mem_mb=2000, runtime=30
    script: "noop.py"


rule model:
    input: "corpus/done.txt", "knowledge.txt"
    output: "models/{variant}.txt"
    log: "logs/models/{variant}.log"
    benchmark: "benchmarks/models/{variant}.tsv"
    threads: 1
    resources: mem_mb=2000, runtime=30
    script: "noop.py"


rule genes:
    input: lambda wildcards: per_sample("embeddings/{variant}/{sample}.txt", variant=wildcards.variant)
    output: "genes/{variant}.txt"
    log: "logs/genes/{variant}.log"
    benchmark: "benchmarks/genes/{variant}.tsv"
    threads: 1
    resources: mem_mb=2000, runtime=30
    script: "noop.py"


rule analysis:
    input: [path for variant in VARIANTS for path in per_sample("embeddings/{variant}/{sample}.txt", variant=variant)]
    output: "analysis.txt"
    log: "logs/analysis.log"
    benchmark: "benchmarks/analysis.tsv"
    threads: 1
    resources: mem_mb=2000, runtime=30
    script: "noop.py"


rule filler:
    output: "filler/{i}.txt"
    log: "logs/filler/{i}.log"
    benchmark: "benchmarks/filler/{i}.tsv"
    threads: 1
    resources: mem_mb=2000, runtime=30
    script: "noop.py"
"""
# Per-sample jobs of the reference: qc, co-expression, histogram, tokens, cells, one embedding a variant.
REFERENCE_PER_SAMPLE_RULES = 5
# Its aggregates: qc summary, knowledge, medians, corpus, analysis, all; a model and genes a variant.
REFERENCE_AGGREGATES = 6


# ------------------------------------------------------------------ sample sheets

def sheet_columns(template: Path) -> list[str]:
    """Header of the demo sample sheet (the layout the generated sheets copy)."""
    with open(template) as handle:
        for line in handle:
            if line.strip() and not line.startswith("#"):
                return line.rstrip("\n").split("\t")
    raise ValueError(f"{template}: no header line")


def sample_rows(n: int) -> list[dict[str, str]]:
    """N samples, human and mouse alternating, formats cycling; paths relative to the run folder."""
    rows = []
    for i in range(n):
        species = ("human", "mouse")[i % 2]
        name = f"{species}_s{i // 2 + 1}"
        fmt, suffix = FORMATS[(i // 2) % len(FORMATS)]
        rows.append({"sample": name, "species": species, "path": f"inputs/counts/{name}{suffix}",
                     "format": fmt, "genome": ""})
    return rows


def write_placeholders(workdir: Path, rows: list[dict[str, str]]) -> None:
    """Empty count files (a folder with the 10x files for 10x_mtx): inputs no rule writes must exist."""
    for row in rows:
        path = workdir / row["path"]
        if row["format"] == "10x_mtx":
            path.mkdir(parents=True, exist_ok=True)
            for name in ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"):
                (path / name).touch()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()


def write_sheet(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    with open(path, "w") as handle:
        handle.write("\t".join(columns) + "\n")
        for row in rows:
            handle.write("\t".join(row.get(column, "") for column in columns) + "\n")


# ------------------------------------------------------------------ one dry run

def dry_run(args, workdir: Path, sheet: Path, log: Path, reference: dict | None = None) -> dict:
    """One ``snakemake -n`` subprocess: wall seconds, peak RSS (MiB), planned jobs.

    ``reference``: {snakefile, variants, filler} to time the bare reference workflow instead."""
    if reference is None:
        command = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(args.snakefile),
                   "--directory", str(workdir), "--configfile", str(args.configfile),
                   "--config", f"samples={sheet}"]
    else:
        command = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(reference["snakefile"]),
                   "--directory", str(workdir), "--config", f"samples={sheet}",
                   f"variants={','.join(reference['variants'])}", f"filler={reference['filler']}"]
    if not args.print_jobs:
        command += ["--quiet", "rules"]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    with open(log, "w") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=env)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > args.timeout:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                timed_out = True
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)     # reaped here, not by Popen
    text = log.read_text(errors="replace")
    totals = re.findall(r"^total\s+(\d+)\s*$", text.split("Job stats:", 1)[-1], flags=re.M)
    return {"seconds": seconds, "peak_mib": usage.ru_maxrss / 1024.0, "rc": proc.returncode,
            "timed_out": timed_out, "jobs": int(totals[-1]) if "Job stats:" in text and totals else None,
            "command": command, "log": log}


def fail_run(result: dict, n: int) -> None:
    tail = "\n".join(result["log"].read_text(errors="replace").splitlines()[-30:])
    print(f"\nsnakemake -n on {n:,} samples failed (exit {result['rc']}); the command:\n  "
          + " ".join(result["command"]) + f"\nlast lines of {result['log']}:\n{tail}", file=sys.stderr)


# ------------------------------------------------------------------ scaling

def loglog_slope(ns: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(seconds) against log(N)."""
    xs, ys = [math.log(n) for n in ns], [math.log(s) for s in seconds]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2500, 5000, 10000],
                        help="numbers of samples (default: 1000 2500 5000 10000)")
    parser.add_argument("--snakefile", type=Path, default=REPO / "Snakefile")
    parser.add_argument("--configfile", type=Path, default=REPO / "config" / "config.yaml",
                        help="config the sample sheet key is overridden in (default: the demo's)")
    parser.add_argument("--template", type=Path, default=REPO / "config" / "samples.tsv",
                        help="sample sheet whose columns the generated sheets copy")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds one dry run may take; larger sizes are then skipped (default 900)")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help=f"skip the {BASELINE_SAMPLES}-sample run (fixed cost; the DAG columns are then raw)")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the bare reference Snakefile (Snakemake's own cost per job)")
    parser.add_argument("--print-jobs", action="store_true",
                        help="time plain `snakemake -n` (a block per job printed) instead of --quiet rules")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="run folder, kept (default: a temporary folder, removed)")
    parser.add_argument("--check", action="store_true", help="exit 1 on FAIL")
    args = parser.parse_args(argv)

    sizes = sorted(set(args.sizes))
    if len(sizes) < 2 or sizes[0] < BASELINE_SAMPLES:
        parser.error(f"give two or more sizes of {BASELINE_SAMPLES} samples or more")
    args.snakefile, args.configfile = args.snakefile.resolve(), args.configfile.resolve()
    wall = time.perf_counter()
    workdir = args.workdir.resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="bench_dag_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        columns = sheet_columns(args.template)
        reference = None
        if args.reference:
            import yaml

            config = yaml.safe_load(args.configfile.read_text())
            variants = [*config["model"]["variants"], "untrained"]
            reference_dir = workdir / "reference"
            reference_dir.mkdir(exist_ok=True)
            (reference_dir / "Snakefile").write_text(REFERENCE_SNAKEFILE)
            (reference_dir / "noop.py").write_text("# the reference's script: never run (dry runs only)\n")
            reference = {"snakefile": reference_dir / "Snakefile", "variants": variants}
        all_rows = sample_rows(sizes[-1])
        started = time.perf_counter()
        write_placeholders(workdir, all_rows)
        setup_seconds = time.perf_counter() - started

        def run(n: int) -> dict:
            sheet = workdir / f"samples_{n}.tsv"
            write_sheet(sheet, columns, all_rows[:n])
            result = dry_run(args, workdir, sheet, workdir / f"dry_run_{n}.log")
            result["n"] = n
            if not result["timed_out"] and (result["rc"] != 0 or result["jobs"] is None):
                fail_run(result, n)
                raise SystemExit(2)
            state = "timed out" if result["timed_out"] else f"{result['jobs']:,} jobs"
            print(f"  {n:>7,} samples: {result['seconds']:8.1f} s, {state}", flush=True)
            if reference is not None and not result["timed_out"] and n != BASELINE_SAMPLES:
                result["reference"] = run_reference(n, sheet, result)
            return result

        def run_reference(n: int, sheet: Path, ours: dict) -> dict:
            jobs = ours["jobs"]
            variants = len(reference["variants"])
            filler = jobs - n * (REFERENCE_PER_SAMPLE_RULES + variants) - REFERENCE_AGGREGATES - 2 * variants
            if filler < 0:
                raise SystemExit(f"the workflow plans {jobs} jobs for {n} samples, fewer than the reference's "
                                 "per-sample shape: update REFERENCE_SNAKEFILE to the workflow's DAG")
            folder = workdir / "reference" / str(n)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "inputs").exists() or (folder / "inputs").symlink_to(workdir / "inputs")
            result = dry_run(args, folder, sheet, workdir / f"reference_{n}.log",
                             reference={**reference, "filler": filler})
            if result["timed_out"] or result["rc"] != 0 or result["jobs"] != jobs:
                fail_run(result, n)
                raise SystemExit(f"the reference planned {result['jobs']} jobs, not the workflow's {jobs}")
            print(f"  {n:>7,} samples: {result['seconds']:8.1f} s, the bare reference; "
                  f"ours / reference {ours['seconds'] / result['seconds']:.2f}", flush=True)
            return result

        print(f"snakemake -n of {args.snakefile} (rule all) in {workdir}", flush=True)
        base = run(BASELINE_SAMPLES) if args.baseline else None
        if base is not None and base["timed_out"]:
            raise SystemExit(f"the {BASELINE_SAMPLES}-sample dry run took over --timeout {args.timeout:.0f} s")
        results = []
        for n in sizes:
            results.append(run(n))
            if results[-1]["timed_out"]:
                break
        skipped = sizes[len(results):]
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    fixed = base["seconds"] if base else 0.0
    done = [r for r in results if not r["timed_out"]]

    print()
    print("GeneCompass DAG benchmark (snakemake -n, default target)")
    print(f"  snakemake {'-n' if args.print_jobs else '-n --quiet rules'}; sample sheets: human/mouse "
          f"alternating, formats {'/'.join(f for f, _ in FORMATS)}; placeholders written in {setup_seconds:.1f} s")
    if base:
        print(f"  fixed cost: {BASELINE_SAMPLES} samples, {base['jobs']:,} jobs, {fixed:.1f} s "
              f"(subtracted in the DAG columns)")
    print()
    header = (f"  {'samples':>8} {'jobs':>8} {'jobs/sample':>11} {'seconds':>9} {'DAG s':>8} "
              f"{'s/1k jobs':>10} {'DAG s/1k jobs':>13} {'peak MiB':>9} {'reference s':>11} {'ours/ref':>8}")
    print(header)
    print("  " + "-" * (len(header) - 2))
    for r in results:
        if r["timed_out"]:
            print(f"  {r['n']:>8,} {'?':>8} {'':>11} {'>' + format(r['seconds'], '.0f'):>9}   "
                  f"(stopped at --timeout {args.timeout:.0f} s)")
            continue
        dag = r["seconds"] - fixed
        ref = r.get("reference")
        print(f"  {r['n']:>8,} {r['jobs']:>8,} {r['jobs'] / r['n']:>11.2f} {r['seconds']:>9.1f} {dag:>8.1f} "
              f"{1000 * r['seconds'] / r['jobs']:>10.2f} {1000 * dag / r['jobs']:>13.2f} {r['peak_mib']:>9.0f}"
              + (f" {ref['seconds']:>11.1f} {r['seconds'] / ref['seconds']:>8.2f}" if ref else ""))
    for n in skipped:
        print(f"  {n:>8,}   (skipped: a smaller size timed out)")
    print()

    passed = False
    if len(done) >= 2:
        first, last = done[0], done[-1]
        ns = [r["n"] for r in done]
        raw = loglog_slope(ns, [r["seconds"] for r in done])
        margins = [r["seconds"] - fixed for r in done]
        marginal = loglog_slope(ns, margins) if min(margins) > 0 else float("nan")
        size_ratio = last["n"] / first["n"]
        print(f"  scaling  samples x{size_ratio:.1f} ({first['n']:,} -> {last['n']:,}), "
              f"jobs x{last['jobs'] / first['jobs']:.2f}")
        print(f"           time    x{last['seconds'] / first['seconds']:.2f} raw"
              + (f", x{margins[-1] / margins[0]:.2f} DAG (minus the fixed cost)" if base and margins[0] > 0 else "")
              + f"   (linear: x{size_ratio:.1f}, quadratic: x{size_ratio ** 2:.1f})")
        print(f"  exponent time ~ N^k, least squares on {len(done)} sizes: k = {raw:.2f} raw"
              + (f", k = {marginal:.2f} DAG" if base else ""))
        decisive = marginal if base else raw
        if base and math.isnan(marginal):
            print("  (a size ran no slower than the fixed cost: the DAG exponent is undefined; sizes too small)")
        below = not math.isnan(decisive) and decisive < EXPONENT_LIMIT
        passed = below and len(done) == len(sizes)
        print(f"  {'PASS' if passed else 'FAIL'}  exponent {decisive:.2f} {'<' if below else '>='} "
              f"{EXPONENT_LIMIT} (1: linear, 2: quadratic)")
        if len(done) < len(sizes):
            print(f"        and {results[-1]['n']:,} samples did not finish in {args.timeout:.0f} s")
    else:
        print(f"  FAIL  fewer than two sizes finished within --timeout {args.timeout:.0f} s")
    if done:
        largest = done[-1]
        print(f"  figure  {largest['n']:,} samples: snakemake -n plans {largest['jobs']:,} jobs in "
              f"{largest['seconds']:.1f} s")
        ref = largest.get("reference")
        if ref:
            ratio = largest["seconds"] / ref["seconds"]
            near = ratio <= REFERENCE_RATIO_LIMIT
            passed = passed and near
            print(f"  {'PASS' if near else 'FAIL'}  the bare reference plans the same {ref['jobs']:,} jobs in "
                  f"{ref['seconds']:.1f} s: ours / reference = {ratio:.2f} "
                  f"({'<=' if near else '>'} {REFERENCE_RATIO_LIMIT})")
    print(f"  wall time of this run {time.perf_counter() - wall:.0f} s")
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
