# GeneCompass workflow: raw single-cell counts -> QC -> homolog token dictionary
# -> ranked-token corpus -> (knowledge, pretraining and downstream tasks).
#
#   snakemake --workflow-profile workflow/profiles/default            # the demo
#   snakemake --workflow-profile workflow/profiles/default --configfile config/real.yaml

import pandas as pd
from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")

samples = pd.read_csv(config["samples"], sep="\t", dtype=str, comment="#").fillna("")
validate(samples, "workflow/schemas/samples.schema.yaml")
if samples["sample"].duplicated().any():
    raise ValueError(
        f"{config['samples']}: field 'sample': duplicate sample names "
        f"{sorted(samples.loc[samples['sample'].duplicated(), 'sample'].unique())}. "
        "Fix: give every row a unique sample name."
    )
samples = samples.set_index("sample", drop=False)


wildcard_constraints:
    sample="|".join(samples.index),
    species="human|mouse",
    variant="|".join([*config["model"]["variants"], "untrained"]),


include: "rules/common.smk"
include: "rules/simulate.smk"
include: "rules/references.smk"
include: "rules/qc.smk"
include: "rules/tokens.smk"
include: "rules/knowledge.smk"
include: "rules/model.smk"
include: "rules/tasks.smk"
include: "rules/grn.smk"


rule all:
    input:
        all_targets(),
    default_target: True
