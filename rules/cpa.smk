# Drug dose response (issue: CPA with GeneCompass gene embeddings): prepare each dataset once
# (split with held-out doses, DE genes), run every method on it, score them side by side.


CPA_METHODS = task_methods(cpa_methods)


rule cpa_prepare:
    input:
        data=lambda wildcards: reference_file(cpa_dataset(wildcards.dataset)["data"]),
        smiles=lambda wildcards: reference_file(cpa_dataset(wildcards.dataset)["smiles"]),
    output:
        samples="results/tasks/cpa/{dataset}/prepared/samples.h5ad",
        genes="results/tasks/cpa/{dataset}/prepared/genes.json",
        report="results/tasks/cpa/{dataset}/prepared/report.json",
    log:
        "results/logs/tasks/cpa/{dataset}/prepare.log",
    benchmark:
        "results/benchmarks/tasks/cpa/{dataset}/prepare.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        outdir=lambda wildcards, output: Path(output.samples).parent,
        entry=lambda wildcards: cpa_dataset(wildcards.dataset),
        task=config["tasks"].get("cpa", {}),
        seed=config["seed"],
    script:
        "../scripts/cpa_prepare.py"


rule cpa_predict:
    input:
        unpack(cpa_method_inputs),
    output:
        predictions="results/tasks/cpa/{dataset}/{method}/predictions.h5ad",
        curves="results/tasks/cpa/{dataset}/{method}/dose_response.tsv",
        info="results/tasks/cpa/{dataset}/{method}/run.json",
    log:
        "results/logs/tasks/cpa/{dataset}/{method}.log",
    benchmark:
        "results/benchmarks/tasks/cpa/{dataset}/{method}.tsv"
    wildcard_constraints:
        method="|".join(CPA_METHODS),
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["model"]
    resources:
        mem_mb=16000,
        runtime=240,
        gpu=lambda wildcards: min(1, config["pretrain"]["gpus"]) if wildcards.method.endswith("cpa") else 0,
    params:
        task=config["tasks"].get("cpa", {}),
        species=lambda wildcards: cpa_dataset(wildcards.dataset).get("species", "human"),
        base_method=lambda wildcards: method_model(cpa_methods, wildcards.method)[0],
        seed=config["seed"],
    script:
        "../scripts/cpa_predict.py"


rule cpa_evaluate:
    input:
        unpack(cpa_evaluate_inputs),
    output:
        metrics=report(
            "results/tasks/cpa/{dataset}/metrics.tsv",
            caption="../workflow/report/cpa_metrics.rst",
            category="4. Tasks",
            subcategory="Drug dose response (CPA)",
            labels={"dataset": "{dataset}", "result": "metrics table"},
        ),
        per_condition="results/tasks/cpa/{dataset}/per_condition.tsv",
        curve_scores="results/tasks/cpa/{dataset}/dose_response_scores.tsv",
        figure=report(
            "results/tasks/cpa/{dataset}/dose_response.png",
            caption="../workflow/report/cpa_figure.rst",
            category="4. Tasks",
            subcategory="Drug dose response (CPA)",
            labels={"dataset": "{dataset}", "result": "dose response"},
        ),
    log:
        "results/logs/tasks/cpa/{dataset}/evaluate.log",
    benchmark:
        "results/benchmarks/tasks/cpa/{dataset}/evaluate.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        methods=CPA_METHODS,
        min_truth_range=config["tasks"].get("cpa", {}).get("min_truth_range", 0.2),
    script:
        "../scripts/cpa_evaluate.py"
