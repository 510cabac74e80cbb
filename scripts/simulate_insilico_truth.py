"""Rule simulate_insilico_truth: the demo world's dosage labels, housekeeping genes and fate drivers."""

from genecompass.simulate.insilico import write_insilico_truth
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    paths = write_insilico_truth(snakemake.params.outdir, seed=snakemake.params.seed,
                                 world_params=snakemake.params.world)
    print(paths)
