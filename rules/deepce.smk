# Gene expression profiling (issue: DeepCE with GeneCompass gene embeddings): signatures of an
# L1000 plate with whole drugs held out, every method on the same split, DeepCE's metrics.


DEEPCE_METHODS = task_methods(deepce_methods)


rule deepce_prepare:
    input:
        data=lambda wildcards: reference_file(deepce_dataset(wildcards.dataset)["data"]),
        smiles=lambda wildcards: reference_file(deepce_dataset(wildcards.dataset)["smiles"]),
    output:
        signatures="results/tasks/deepce/{dataset}/prepared/signatures.h5ad",
        smiles="results/tasks/deepce/{dataset}/prepared/smiles.json",
        report="results/tasks/deepce/{dataset}/prepared/report.json",
    log:
        "results/logs/tasks/deepce/{dataset}/prepare.log",
    benchmark:
        "results/benchmarks/tasks/deepce/{dataset}/prepare.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        outdir=lambda wildcards, output: Path(output.signatures).parent,
        entry=lambda wildcards: deepce_dataset(wildcards.dataset),
        task=config["tasks"].get("deepce", {}),
        seed=config["seed"],
    script:
        "../scripts/deepce_prepare.py"


rule deepce_predict:
    input:
        unpack(deepce_method_inputs),
    output:
        predictions="results/tasks/deepce/{dataset}/{method}/predictions.tsv.gz",
        info="results/tasks/deepce/{dataset}/{method}/run.json",
    log:
        "results/logs/tasks/deepce/{dataset}/{method}.log",
    benchmark:
        "results/benchmarks/tasks/deepce/{dataset}/{method}.tsv"
    wildcard_constraints:
        method="|".join(DEEPCE_METHODS),
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["model"]
    resources:
        mem_mb=16000,
        runtime=240,
        gpu=lambda wildcards: min(1, config["pretrain"]["gpus"]) if wildcards.method.endswith("deepce") else 0,
    params:
        task=config["tasks"].get("deepce", {}),
        species=lambda wildcards: deepce_dataset(wildcards.dataset).get("species", "human"),
        base_method=lambda wildcards: method_model(deepce_methods, wildcards.method)[0],
        seed=config["seed"],
    script:
        "../scripts/deepce_predict.py"


rule deepce_evaluate:
    input:
        signatures="results/tasks/deepce/{dataset}/prepared/signatures.h5ad",
        predictions=lambda wildcards: [
            f"results/tasks/deepce/{wildcards.dataset}/{method}/predictions.tsv.gz" for method in DEEPCE_METHODS
        ],
    output:
        metrics=report(
            "results/tasks/deepce/{dataset}/metrics.tsv",
            caption="../workflow/report/deepce_metrics.rst",
            category="4. Tasks",
            subcategory="Drug expression profiles (DeepCE)",
            labels={"dataset": "{dataset}", "result": "metrics table"},
        ),
        per_profile="results/tasks/deepce/{dataset}/per_profile.tsv",
        figure=report(
            "results/tasks/deepce/{dataset}/metrics.png",
            caption="../workflow/report/deepce_figure.rst",
            category="4. Tasks",
            subcategory="Drug expression profiles (DeepCE)",
            labels={"dataset": "{dataset}", "result": "metrics figure"},
        ),
    log:
        "results/logs/tasks/deepce/{dataset}/evaluate.log",
    benchmark:
        "results/benchmarks/tasks/deepce/{dataset}/evaluate.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        methods=DEEPCE_METHODS,
        precision_k=config["tasks"].get("deepce", {}).get("precision_k", [10, 50, 100]),
    script:
        "../scripts/deepce_evaluate.py"
