"""Rule simulate_drug_screen: the demo world's single-cell dose-response screen and L1000-like plate."""

from genecompass.simulate.drug import write_drug_screen
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    paths = write_drug_screen(snakemake.params.outdir, seed=snakemake.params.seed,
                              world_params=snakemake.params.world, params=snakemake.params.drug_screen)
    print(paths)
