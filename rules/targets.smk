# Named targets: one rule per stage and per downstream task, so that
#   snakemake --workflow-profile workflow/profiles/default task_grn
# builds the GRN task (and whatever it needs) and nothing else. Each rule only
# gathers files; `all` requests what they request together (all_targets).
#
# The rules are made in a loop (their names come from the `name:` directive).
# They run nothing, so Snakemake runs them locally and they need no log,
# resources or conda env.

TARGET_RULES = {
    "stage_qc": lambda: ["results/qc/summary.tsv", *qc_outputs("h5ad")],
    "stage_tokens": lambda: [
        "results/tokens/dictionary_summary.json",
        "results/tokens/medians.tsv",
        "results/corpus/summary.json",
    ],
    "stage_knowledge": lambda: ["results/knowledge/knowledge.safetensors"],
    "stage_pretrain": lambda: [
        *[f"results/model/{variant}/summary.json" for variant in pretrained_variants()],
        *released_targets(),
    ],
    "stage_embeddings": lambda: [
        *[f"results/embeddings/{source_model()}/cells/{sample}.h5ad" for sample in samples.index],
        *[f"results/model/released/tokens/{sample}.json" for sample in samples.index if released_source()],
        "results/analysis/gene_embeddings/summary.tsv",
    ],
    # The plain path (config/own_data.yaml): QC, tokens and embeddings of the sheet's samples with the
    # source model, and their figures; no pretraining and no task.
    "own_data": lambda: [
        "results/qc/summary.tsv",
        "results/qc/summary.png",
        *[f"results/embeddings/{source_model()}/cells/{sample}.h5ad" for sample in samples.index],
        *embedding_inputs(source_model()).values(),
        f"results/embeddings/{source_model()}/cells.png",
        *[f"results/model/released/tokens/{sample}.json" for sample in samples.index if released_source()],
    ],
    "task_came": came_targets,
    "task_annotation": annotation_targets,
    "task_grn": grn_targets,
    "task_perturbation": perturbation_targets,
    "task_cpa": cpa_targets,
    "task_deepce": deepce_targets,
    "task_dosage": dosage_targets,
    "task_insilico": insilico_targets,
    "summary": summary_targets,
}


for _target_rule, _targets in TARGET_RULES.items():

    rule:
        name:
            _target_rule
        input:
            _targets(),


def all_targets():
    """Every named target's files, what ``all`` builds; the per-sample QC h5ads are left out, because
    the jobs of the QC summary write them anyway."""
    qc_files = set(qc_outputs("h5ad"))
    return [path for targets in TARGET_RULES.values() for path in targets() if path not in qc_files]
