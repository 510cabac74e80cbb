"""Rule simulate_world: write the synthetic demo world."""

from genecompass.simulate.world import simulate_world
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    simulate_world(snakemake.params.outdir, seed=snakemake.params.seed, params=snakemake.params.world)
