# GeneCompass workflow: raw single-cell counts -> QC -> homolog token dictionary
# -> ranked-token corpus -> (knowledge, pretraining and downstream tasks).
#
#   snakemake --workflow-profile workflow/profiles/default            # the demo
#   snakemake --workflow-profile workflow/profiles/default --configfile config/real.yaml

from snakemake.utils import min_version, validate

from genecompass.errors import check_config
from genecompass.sample_sheet import read_sample_sheet

min_version("8.0")


configfile: "config/config.yaml"


# snakemake --report results/report.html (or .zip): every figure and table registered with report().
report: "workflow/report/workflow.rst"


# Readable errors first (file, key, value, what is accepted), then Snakemake's own check.
SCHEMAS = f"{workflow.basedir}/workflow/schemas"
check_config(config, f"{SCHEMAS}/config.schema.yaml", workflow.overwrite_configfiles or ["config/config.yaml"])
validate(config, "workflow/schemas/config.schema.yaml")

# Columns, values, unique names and existing count files (the simulated world's are made by a rule).
samples = read_sample_sheet(
    config["samples"], f"{SCHEMAS}/samples.schema.yaml", produced_under=config["simulate"]["outdir"]
)
samples = samples.set_index("sample", drop=False)


wildcard_constraints:
    # The sheet's name pattern (workflow/schemas/samples.schema.yaml), not the list of names: an
    # alternation of every name sits in every per-sample pattern and makes planning quadratic.
    sample="[A-Za-z0-9][A-Za-z0-9_.-]*",
    species="human|mouse",
    variant="|".join([*config["model"]["variants"], "untrained", "released"]),


include: "rules/common.smk"
include: "rules/simulate.smk"
include: "rules/references_functions.smk"
include: "rules/references.smk"
include: "rules/qc.smk"
include: "rules/tokens.smk"
include: "rules/knowledge_functions.smk"
include: "rules/knowledge.smk"
include: "rules/model_functions.smk"
include: "rules/model.smk"
include: "rules/annotation_functions.smk"
include: "rules/annotation.smk"
include: "rules/came_functions.smk"
include: "rules/came.smk"
include: "rules/grn_functions.smk"
include: "rules/grn.smk"
include: "rules/perturbation_functions.smk"
include: "rules/perturbation.smk"
include: "rules/cpa_functions.smk"
include: "rules/cpa.smk"
include: "rules/deepce_functions.smk"
include: "rules/deepce.smk"
include: "rules/dosage_functions.smk"
include: "rules/dosage.smk"
include: "rules/insilico_functions.smk"
include: "rules/insilico.smk"
include: "rules/summary_functions.smk"
include: "rules/summary.smk"
include: "rules/targets.smk"


rule all:
    default_target: True
    input:
        all_targets(),
