# Perturbation prediction (issue: GEARS with GeneCompass gene embeddings against honest
# baselines): prepare each Perturb-seq dataset once, run every method on the same split,
# evaluate them side by side.


PERTURBATION_METHODS = task_methods(perturbation_methods)


rule perturbation_prepare:
    input:
        data=lambda wildcards: reference_file(perturbation_dataset(wildcards.dataset)["data"]),
        go=lambda wildcards: reference_file(perturbation_dataset(wildcards.dataset)["go_gene_sets"]),
    output:
        cells="results/tasks/perturbation/{dataset}/prepared/cells.h5ad",
        split="results/tasks/perturbation/{dataset}/prepared/split.json",
        de_genes="results/tasks/perturbation/{dataset}/prepared/de_genes.json",
        report="results/tasks/perturbation/{dataset}/prepared/report.json",
    log:
        "results/logs/tasks/perturbation/{dataset}/prepare.log",
    benchmark:
        "results/benchmarks/tasks/perturbation/{dataset}/prepare.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=60,
    params:
        outdir=lambda wildcards, output: Path(output.cells).parent,
        task=config["tasks"].get("perturbation", {}),
        seed=config["seed"],
    script:
        "../scripts/perturbation_prepare.py"


rule perturbation_predict:
    input:
        unpack(perturbation_method_inputs),
    output:
        predictions="results/tasks/perturbation/{dataset}/{method}/predictions.tsv.gz",
        info="results/tasks/perturbation/{dataset}/{method}/run.json",
    log:
        "results/logs/tasks/perturbation/{dataset}/{method}.log",
    benchmark:
        "results/benchmarks/tasks/perturbation/{dataset}/{method}.tsv"
    wildcard_constraints:
        method="|".join(PERTURBATION_METHODS),
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["model"]
    resources:
        mem_mb=16000,
        runtime=240,
        gpu=lambda wildcards: min(1, config["pretrain"]["gpus"]) if wildcards.method.endswith("gears") else 0,
    params:
        task=config["tasks"].get("perturbation", {}),
        base_method=lambda wildcards: method_model(perturbation_methods, wildcards.method)[0],
        species=lambda wildcards: perturbation_dataset(wildcards.dataset).get("species", "human"),
        seed=config["seed"],
    script:
        "../scripts/perturbation_predict.py"


rule perturbation_evaluate:
    input:
        prepared="results/tasks/perturbation/{dataset}/prepared/cells.h5ad",
        predictions=lambda wildcards: [
            f"results/tasks/perturbation/{wildcards.dataset}/{method}/predictions.tsv.gz"
            for method in PERTURBATION_METHODS
        ],
    output:
        metrics=report(
            "results/tasks/perturbation/{dataset}/metrics.tsv",
            caption="../workflow/report/perturbation_metrics.rst",
            category="4. Tasks",
            subcategory="Genetic perturbation (GEARS)",
            labels={"dataset": "{dataset}", "result": "metrics table"},
        ),
        per_condition="results/tasks/perturbation/{dataset}/per_condition.tsv",
        comparison="results/tasks/perturbation/{dataset}/genecompass_vs_gears.tsv",
        variance="results/tasks/perturbation/{dataset}/variance.tsv",
        figure=report(
            "results/tasks/perturbation/{dataset}/pearson_delta.png",
            caption="../workflow/report/perturbation_figure.rst",
            category="4. Tasks",
            subcategory="Genetic perturbation (GEARS)",
            labels={"dataset": "{dataset}", "result": "Pearson delta"},
        ),
    log:
        "results/logs/tasks/perturbation/{dataset}/evaluate.log",
    benchmark:
        "results/benchmarks/tasks/perturbation/{dataset}/evaluate.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        methods=PERTURBATION_METHODS,
    script:
        "../scripts/perturbation_evaluate.py"
