"""Benchmark of genecompass.tokenize on a large synthetic sample.

Writes a cells x genes count matrix to an .h5ad chunk by chunk (never the
whole matrix in memory), then measures in fresh subprocesses:

* the histogram pass (``sample_histogram``) that feeds the gene medians;
* ``tokenize_sample`` (ours: read, tokenize, write the Arrow shard) on the
  first ``--head-cells`` cells and on all cells: throughput and peak memory,
  to show that memory does not grow with the number of cells;
* on the first ``--reference-cells`` cells, with their chunks already in
  memory (best of ``--repeats`` runs each): our ``CellTokenizer`` alone (all
  threads, then one thread), the per-cell reference
  ``tokenize_cell_reference`` (dense row, argsort) and a leaner per-cell
  baseline (argsort of the cell's non-zeros only); all checked identical to
  each other and to the shard;
* numba's compile time, apart: the kernels are compiled once, on a tiny
  file, into a cache of its own (``NUMBA_CACHE_DIR``, emptied first), which
  the measured runs then load (as a pipeline's jobs load the package's).

    python bench/bench_tokenize.py                  # 200,000 cells x 20,000 genes
    python bench/bench_tokenize.py --quick          # 20,000-cell smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# ------------------------------------------------------------------ data

def generate(path: Path, head_path: Path, n_cells: int, n_genes: int, head_cells: int, seed: int,
             chunk: int = 1000) -> dict:
    """Write a realistic raw-count .h5ad (and one with its first cells) chunk by chunk.

    Genes have lognormal relative rates; each cell draws how many genes it
    expresses (1,000-3,000) and gets the library size that gives that many
    expressed genes on average; counts are 1 + Poisson among expressed genes.
    """
    import anndata.io
    import h5py
    import pandas as pd

    rng = np.random.default_rng(seed)
    rates = rng.lognormal(0.0, 1.5, n_genes)
    rates /= rates.sum()
    # expected expressed genes as a function of library size, to invert per cell
    sizes = np.geomspace(10, 1e8, 4000)
    expressed = (1 - np.exp(-np.outer(sizes, rates))).sum(axis=1)
    genes = [f"ENSG{i:011d}" for i in range(n_genes)]

    def open_h5ad(target: Path, cells: int, sample: str):
        handle = h5py.File(target, "w")
        handle.attrs["encoding-type"] = "anndata"
        handle.attrs["encoding-version"] = "0.1.0"
        group = handle.create_group("X")
        group.attrs["encoding-type"] = "csr_matrix"
        group.attrs["encoding-version"] = "0.1.0"
        group.attrs["shape"] = np.array([cells, n_genes])
        group.create_dataset("data", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(1 << 20,))
        group.create_dataset("indices", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(1 << 20,))
        group.create_dataset("indptr", shape=(cells + 1,), dtype=np.int64)
        names = [f"cell{i:07d}" for i in range(cells)]
        anndata.io.write_elem(handle, "obs", pd.DataFrame(index=names))
        anndata.io.write_elem(handle, "var", pd.DataFrame(index=genes))
        anndata.io.write_elem(handle, "uns", {"species": "human", "sample": sample})
        for key in ("obsm", "varm", "obsp", "varp", "layers"):
            anndata.io.write_elem(handle, key, {})
        return handle

    def append(handle, start_cell, counts):
        group = handle["X"]
        offset = group["data"].shape[0]
        group["data"].resize((offset + counts.nnz,))
        group["indices"].resize((offset + counts.nnz,))
        group["data"][offset:] = counts.data
        group["indices"][offset:] = counts.indices
        group["indptr"][start_cell:start_cell + counts.shape[0] + 1] = counts.indptr + offset

    import scipy.sparse as sp

    tmp, head_tmp = path.with_suffix(".tmp.h5ad"), head_path.with_suffix(".tmp.h5ad")
    full, head = open_h5ad(tmp, n_cells, path.stem), open_h5ad(head_tmp, head_cells, head_path.stem)
    genes_per_cell = []
    try:
        for start in range(0, n_cells, chunk):
            stop = min(start + chunk, n_cells)
            target = rng.uniform(1000, 3000, stop - start)
            library = np.interp(target, expressed, sizes)
            lam = np.outer(library, rates).astype(np.float32)
            hit = rng.random(lam.shape, dtype=np.float32) < -np.expm1(-lam)
            rows, cols = np.nonzero(hit)
            values = 1 + rng.poisson(lam[rows, cols]).astype(np.int32)
            counts = sp.csr_matrix((values, (rows, cols)), shape=(stop - start, n_genes), dtype=np.int32)
            counts.sort_indices()
            genes_per_cell.append(np.diff(counts.indptr))
            append(full, start, counts)
            if start < head_cells:
                append(head, start, counts[: max(0, min(stop, head_cells) - start)])
    finally:
        full.close()
        head.close()
    os.replace(tmp, path)
    os.replace(head_tmp, head_path)
    per_cell = np.concatenate(genes_per_cell)
    return {"nnz": int(per_cell.sum()), "genes_per_cell_mean": float(per_cell.mean()),
            "genes_per_cell_min": int(per_cell.min()), "genes_per_cell_max": int(per_cell.max())}


def make_gene_to_token(n_genes: int, seed: int) -> dict[str, int]:
    """Token ids shuffled against gene order; 3 % of genes unmapped, 2 % share a token."""
    rng = np.random.default_rng(seed + 1)
    genes = [f"ENSG{i:011d}" for i in range(n_genes)]
    tokens = rng.permutation(n_genes) + 4
    mapping = {g: int(t) for g, t in zip(genes, tokens)}
    shuffled = rng.permutation(n_genes)
    for i in shuffled[: int(0.03 * n_genes)]:
        del mapping[genes[i]]
    pairs = shuffled[int(0.03 * n_genes): int(0.05 * n_genes)]
    for a, b in zip(pairs[::2], pairs[1::2]):
        mapping[genes[b]] = mapping[genes[a]]
    return mapping


# ------------------------------------------------------------------ workers (fresh processes)

def _proc_status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _peak_rss_mib() -> float:
    """Peak resident memory of this process.

    VmHWM, not getrusage: ru_maxrss survives fork + exec, so a worker started
    by a big parent would report the parent's peak.
    """
    return _proc_status_mib("VmHWM")


def _current_rss_mib() -> float:
    return _proc_status_mib("VmRSS")


def _load_inputs(workdir: Path):
    from genecompass import tokenize as tk

    with open(workdir / "gene_to_token.json") as handle:
        gene_to_token = json.load(handle)
    medians_path = workdir / "medians.tsv"
    return gene_to_token, tk.read_medians(medians_path) if medians_path.exists() else None


def worker_histogram(args) -> dict:
    from genecompass import tokenize as tk

    gene_to_token, _ = _load_inputs(args.workdir)
    baseline = _current_rss_mib()
    started, cpu_started = time.perf_counter(), time.process_time()
    hist = tk.sample_histogram(args.h5ad, gene_to_token, chunk_size=args.chunk_size, progress=True)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    hist.save(args.workdir / "histogram.npz")
    tk.write_medians(tk.medians_from_histogram(hist), args.workdir / "medians.tsv")
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "cells": hist.n_cells,
            "rss_before_mib": baseline, "peak_rss_mib": _peak_rss_mib()}


class RssSampler:
    """Samples this process's resident memory in the background."""

    def __init__(self, every: float = 0.2):
        import threading

        self.samples, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every):
        while not self._stop.wait(every):
            self.samples.append(_current_rss_mib())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def by_quarter(self) -> list[float]:
        """Largest RSS seen in each quarter of the run."""
        parts = np.array_split(np.array(self.samples or [np.nan]), 4)
        return [float(p.max()) if len(p) else float("nan") for p in parts]


def worker_tokenize(args) -> dict:
    import datasets.arrow_writer  # noqa: F401  (import time is not tokenization time)

    from genecompass import tokenize as tk

    gene_to_token, medians = _load_inputs(args.workdir)
    baseline = _current_rss_mib()
    with RssSampler() as sampler:
        started, cpu_started = time.perf_counter(), time.process_time()
        stats = tk.tokenize_sample(args.h5ad, args.out, gene_to_token, medians, max_length=args.max_length,
                                   chunk_size=args.chunk_size, progress=True)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "cells": stats["n_cells"], "stats": stats,
            "rss_before_mib": baseline, "peak_rss_mib": _peak_rss_mib(), "rss_by_quarter": sampler.by_quarter()}


def tokenize_cell_sparse(indices, data, gene_tokens, median_by_token, max_length, target_sum):
    """Per-cell baseline that only touches the cell's non-zeros (no dense vectors)."""
    total = data.sum(dtype=np.float64)
    tokens = gene_tokens[indices]
    keep = tokens >= 0
    keep[keep] = np.isfinite(median_by_token[tokens[keep]])
    ids, inverse = np.unique(tokens[keep], return_inverse=True)
    counts = np.bincount(inverse, weights=data[keep].astype(np.float64), minlength=len(ids))
    value = counts / total * target_sum / median_by_token[ids]
    order = np.argsort(-value, kind="stable")[:max_length]
    return ids[order].astype(np.int32), np.log1p(value[order]).astype(np.float32)


def worker_reference(args) -> dict:
    import anndata
    from datasets import Dataset

    from genecompass import tokenize as tk

    gene_to_token, medians = _load_inputs(args.workdir)
    adata = anndata.read_h5ad(args.h5ad, backed="r")
    n = min(args.reference_cells, adata.n_obs)
    chunks = [tk.as_csr(adata.X[s:min(s + args.chunk_size, n)]) for s in range(0, n, args.chunk_size)]
    gene_tokens = tk.gene_token_index(adata.var_names, gene_to_token)
    median_by_token = tk.median_array(medians)
    target_sum = tk.DEFAULT_TARGET_SUM

    def best_of(run, repeats=args.repeats):
        """Outputs of ``run()`` and its fastest time over ``repeats`` runs (the machine is shared)."""
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            outputs = run()
            seconds.append(time.perf_counter() - started)
        return outputs, min(seconds)

    def per_cell(function):
        outputs = []
        dense = np.zeros(adata.n_vars, dtype=np.int32)
        for chunk in chunks:
            for row in range(chunk.shape[0]):
                lo, hi = chunk.indptr[row], chunk.indptr[row + 1]
                outputs.append(function(chunk.indices[lo:hi], chunk.data[lo:hi], dense))
        return outputs

    def reference(indices, data, dense):
        dense[indices] = data                      # densify the cell's row
        result = tk.tokenize_cell_reference(dense, gene_tokens, median_by_token, args.max_length, target_sum)
        dense[indices] = 0
        return result

    def sparse(indices, data, _dense):
        return tokenize_cell_sparse(indices, data, gene_tokens, median_by_token, args.max_length, target_sum)

    reference_out, reference_s = best_of(lambda: per_cell(reference))
    sparse_out, sparse_s = best_of(lambda: per_cell(sparse))
    tokenizer = tk.CellTokenizer(adata.var_names, gene_to_token, medians, args.max_length, target_sum)
    tokenizer(chunks[0][:1])                       # load the compiled kernels: not compute
    ours, ours_s = best_of(lambda: [tokenizer(chunk) for chunk in chunks])

    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    one_thread, one_thread_s = best_of(lambda: [tokenizer(chunk) for chunk in chunks])
    numba.set_num_threads(threads)

    shard = Dataset.from_file(str(args.out)).select(range(n))

    def cells(parts):
        return [part.cell(i) for part in parts for i in range(len(part.lengths))]

    ours_cells, one_thread_cells = cells(ours), cells(one_thread)
    identical = all(
        np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        for other in (sparse_out, ours_cells, one_thread_cells) for a, b in zip(reference_out, other))
    identical &= len(reference_out) == len(ours_cells) == len(one_thread_cells) == n
    for i, row in enumerate(shard.with_format("numpy")):
        identical &= np.array_equal(row["input_ids"], reference_out[i][0])
        identical &= np.array_equal(row["values"], reference_out[i][1])
    return {"cells": n, "reference_seconds": reference_s, "sparse_seconds": sparse_s,
            "ours_compute_seconds": ours_s, "one_thread_seconds": one_thread_s, "threads": threads,
            "identical": bool(identical)}


def worker_jit(args) -> dict:
    """Both passes on a tiny file, twice: the first call compiles the numba
    kernels (or loads them from NUMBA_CACHE_DIR), the second does not."""
    import datasets.arrow_writer  # noqa: F401

    from genecompass import tokenize as tk

    gene_to_token, _ = _load_inputs(args.workdir)
    with tk._CountsReader(args.h5ad):               # imports the readers: not numba's time
        pass
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        hist = tk.sample_histogram(args.h5ad, gene_to_token, chunk_size=args.chunk_size)
        tk.tokenize_sample(args.h5ad, args.out, gene_to_token, tk.medians_from_histogram(hist),
                           max_length=args.max_length, chunk_size=args.chunk_size, progress=False)
        seconds.append(time.perf_counter() - started)
    return {"first_seconds": seconds[0], "second_seconds": seconds[1]}


WORKERS = {"histogram": worker_histogram, "tokenize": worker_tokenize, "reference": worker_reference,
           "jit": worker_jit}


def prepare_io(path: Path) -> None:
    """Flush pending writes and read ``path`` once, so that timings measure
    tokenization rather than the disk (skipped when it would not fit in RAM)."""
    os.sync()
    available = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    if path.stat().st_size < available / 2:
        with open(path, "rb") as handle:
            while handle.read(64 << 20):
                pass


def run_worker(kind: str, **options) -> dict:
    if "h5ad" in options:
        prepare_io(options["h5ad"])
    command = [sys.executable, __file__, "--worker", kind]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ driver

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=200_000)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "genecompass_bench")
    parser.add_argument("--quick", action="store_true", help="20,000-cell smoke run")
    parser.add_argument("--head-cells", type=int, default=None, help="cells of the smaller memory run")
    parser.add_argument("--reference-cells", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3, help="in-memory timings: best of this many runs")
    parser.add_argument("--chunk-size", type=int, default=2048)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    # internal: run one measurement in this (fresh) process
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--h5ad", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return 0

    wall = time.perf_counter()
    if args.quick:
        args.cells = 20_000
        args.reference_cells = min(args.reference_cells, 2000)
    head_cells = args.head_cells or max(1, args.cells // 4)
    args.workdir.mkdir(parents=True, exist_ok=True)
    stem = f"bench_{args.cells}x{args.genes}_seed{args.seed}"
    data_path = args.workdir / f"{stem}.h5ad"
    head_path = args.workdir / f"{stem}_head{head_cells}.h5ad"
    info_path = args.workdir / f"{stem}.json"

    if data_path.exists() and head_path.exists() and info_path.exists():
        info = json.loads(info_path.read_text())
        print(f"reusing {data_path}", file=sys.stderr)
    else:
        print(f"generating {data_path} ...", file=sys.stderr)
        started = time.perf_counter()
        info = generate(data_path, head_path, args.cells, args.genes, head_cells, args.seed)
        info["generate_seconds"] = time.perf_counter() - started
        info_path.write_text(json.dumps(info))
    tiny_path = args.workdir / f"bench_64x{args.genes}_seed{args.seed}.h5ad"
    if not tiny_path.exists():
        generate(tiny_path, args.workdir / f"{tiny_path.stem}_head1.h5ad", 64, args.genes, 1, args.seed)
    gene_to_token = make_gene_to_token(args.genes, args.seed)
    (args.workdir / "gene_to_token.json").write_text(json.dumps(gene_to_token))
    (args.workdir / "medians.tsv").unlink(missing_ok=True)

    # Compile the kernels into a cache of this run's own, so that the first
    # worker compiles them from scratch and the measured ones load them.
    numba_cache = args.workdir / "numba_cache"
    shutil.rmtree(numba_cache, ignore_errors=True)
    os.environ["NUMBA_CACHE_DIR"] = str(numba_cache)
    common = {"workdir": args.workdir, "chunk_size": args.chunk_size, "max_length": args.max_length}
    jit_cold = run_worker("jit", h5ad=tiny_path, out=args.workdir / "shard_tiny.arrow", **common)
    jit_warm = run_worker("jit", h5ad=tiny_path, out=args.workdir / "shard_tiny.arrow", **common)
    hist = run_worker("histogram", h5ad=data_path, **common)
    shard_head = args.workdir / "shard_head.arrow"
    shard_all = args.workdir / "shard_all.arrow"
    shard_all.unlink(missing_ok=True)       # a previous run's: replacing it would be timed
    small = run_worker("tokenize", h5ad=head_path, out=shard_head, **common)
    shard_head.unlink()                     # keep the disk (and its cache) for the large run
    large = run_worker("tokenize", h5ad=data_path, out=shard_all, **common)
    ref = run_worker("reference", h5ad=data_path, out=shard_all, reference_cells=args.reference_cells,
                     repeats=args.repeats, **common)

    def rate(cells, seconds):
        return cells / seconds if seconds else float("nan")

    ours_rate = rate(large["cells"], large["seconds"])
    reference_rate = rate(ref["cells"], ref["reference_seconds"])
    sparse_rate = rate(ref["cells"], ref["sparse_seconds"])
    compute_rate = rate(ref["cells"], ref["ours_compute_seconds"])
    file_gb = data_path.stat().st_size / 1e9

    print()
    print("GeneCompass tokenization benchmark")
    print(f"  data    {args.cells:,} cells x {args.genes:,} genes, {info['nnz']:,} non-zeros "
          f"({info['genes_per_cell_mean']:.0f} genes/cell, {info['genes_per_cell_min']}-"
          f"{info['genes_per_cell_max']}), {file_gb:.2f} GB .h5ad")
    print(f"  tokens  {len(set(gene_to_token.values())):,} for {len(gene_to_token):,} mapped genes; "
          f"max_length {args.max_length}, chunk {args.chunk_size} cells; shard "
          f"{large['stats']['n_tokens']:,} tokens, mean length {large['stats']['mean_length']:.0f}")
    print()
    header = (f"  {'step':<46} {'cells':>9} {'seconds':>9} {'cells/s':>9} {'cells/CPU s':>11} "
              f"{'peak RSS MiB':>13} {'RSS before':>11}")
    print(header)
    print("  " + "-" * (len(header) - 2))

    def line(name, cells, seconds, cpu=None, peak=None, before=None):
        cpu_text = f"{rate(cells, cpu):>11,.0f}" if cpu is not None else f"{'':11}"
        peak_text = f"{peak:13.0f}" if peak is not None else f"{'':13}"
        before_text = f"{before:11.0f}" if before is not None else f"{'':11}"
        print(f"  {name:<46} {cells:>9,} {seconds:>9.1f} {rate(cells, seconds):>9,.0f} {cpu_text} "
              f"{peak_text} {before_text}")

    def worker_line(name, result):
        line(name, result["cells"], result["seconds"], result["cpu_seconds"], result["peak_rss_mib"],
             result["rss_before_mib"])

    worker_line("histogram pass (sample_histogram)", hist)
    worker_line(f"ours: tokenize_sample, first {small['cells']:,} cells", small)
    worker_line(f"ours: tokenize_sample, all {large['cells']:,} cells", large)
    line("ours: CellTokenizer only (in memory)", ref["cells"], ref["ours_compute_seconds"])
    line("ours: CellTokenizer only, 1 thread", ref["cells"], ref["one_thread_seconds"])
    line("per-cell reference (tokenize_cell_reference)", ref["cells"], ref["reference_seconds"])
    line("per-cell sparse baseline (argsort non-zeros)", ref["cells"], ref["sparse_seconds"])
    print()
    print(f"  (ours uses {ref['threads']} threads unless said; in-memory rows: input chunks already in memory,")
    print(f"   best of {args.repeats} runs; per-cell rows: one thread; cells/CPU s counts all the process's threads)")
    print()
    print(f"  speed   ours end-to-end / per-cell reference   = {ours_rate / reference_rate:6.1f}x")
    print(f"          ours compute    / per-cell reference   = {compute_rate / reference_rate:6.1f}x")
    print(f"          ours end-to-end / per-cell sparse      = {ours_rate / sparse_rate:6.1f}x")
    print(f"          ours compute    / per-cell sparse      = {compute_rate / sparse_rate:6.1f}x")
    print(f"  memory  peak RSS {small['peak_rss_mib']:.0f} MiB at {small['cells']:,} cells, "
          f"{large['peak_rss_mib']:.0f} MiB at {large['cells']:,} cells "
          f"(x{large['peak_rss_mib'] / small['peak_rss_mib']:.2f} for x{large['cells'] / small['cells']:.0f} cells); "
          f"growth during the run {small['peak_rss_mib'] - small['rss_before_mib']:.0f} vs "
          f"{large['peak_rss_mib'] - large['rss_before_mib']:.0f} MiB")
    print("          RSS by quarter of the run (max MiB): "
          f"{small['cells']:,} cells {' / '.join(f'{v:.0f}' for v in small['rss_by_quarter'])}; "
          f"{large['cells']:,} cells {' / '.join(f'{v:.0f}' for v in large['rss_by_quarter'])}")
    print(f"  jit     numba compile on first use {jit_cold['first_seconds'] - jit_cold['second_seconds']:.1f} s "
          f"(cold cache; not in the timings above); loading the cached kernels "
          f"{jit_warm['first_seconds'] - jit_warm['second_seconds']:.1f} s (in each tokenize_sample and "
          f"histogram row above)")
    print("  check   reference, sparse baseline, ours (both thread counts) and shard identical on "
          f"{ref['cells']:,} cells: "
          f"{'yes' if ref['identical'] else 'NO'}")
    if "generate_seconds" in info:
        print(f"  data generation took {info['generate_seconds']:.0f} s (cached in {args.workdir})")
    print(f"  wall time of this run {time.perf_counter() - wall:.0f} s")
    return 0 if ref["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
