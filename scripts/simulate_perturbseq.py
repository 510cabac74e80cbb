"""Rule simulate_perturbseq: the demo world's Perturb-seq experiment and its GO-like gene sets."""

from genecompass.simulate.perturbseq import write_perturbseq
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    paths = write_perturbseq(snakemake.params.outdir, seed=snakemake.params.seed,
                             world_params=snakemake.params.world, params=snakemake.params.perturbseq)
    print(paths)
