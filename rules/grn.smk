# GRN inference (tasks.grn): BEELINE-shaped datasets, every method's ranked edges and
# scores against each ground-truth network, the embedding-prior threshold sweep, and
# one table per dataset.


rule grn_dataset:
    input:
        unpack(grn_dataset_inputs),
    output:
        directory("results/tasks/grn/{dataset}/input"),
    log:
        "results/logs/tasks/grn/{dataset}/input.log",
    benchmark:
        "results/benchmarks/tasks/grn/{dataset}/input.tsv"
    wildcard_constraints:
        dataset=grn_dataset_pattern(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        dataset=lambda wildcards: grn_dataset(wildcards.dataset),
    script:
        "../scripts/grn_dataset.py"


rule grn_infer:
    input:
        unpack(grn_infer_inputs),
    output:
        edges="results/tasks/grn/{dataset}/{method}/rankedEdges.csv",
        metrics="results/tasks/grn/{dataset}/{method}/metrics.tsv",
    log:
        "results/logs/tasks/grn/{dataset}/{method}.log",
    benchmark:
        "results/benchmarks/tasks/grn/{dataset}/{method}.tsv"
    wildcard_constraints:
        dataset=grn_dataset_pattern(),
        method="|".join(grn_method_names()),
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["model"]
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        task=config["tasks"].get("grn", {}),
        species=lambda wildcards: grn_dataset(wildcards.dataset)["species"],
        seed=config["seed"],
    script:
        "../scripts/grn_infer.py"


rule grn_prior_sweep:
    input:
        dataset="results/tasks/grn/{dataset}/input",
        deepsem="results/tasks/grn/{dataset}/deepsem/rankedEdges.csv",
        contextual="results/embeddings/{variant}/genes_contextual.tsv.gz",
        static="results/embeddings/{variant}/genes_static.tsv.gz",
    output:
        table="results/tasks/grn/{dataset}/prior_sweep/{variant}.tsv",
        figure=report(
            "results/tasks/grn/{dataset}/prior_sweep/{variant}.png",
            caption="../workflow/report/grn_prior_sweep.rst",
            category="4. Tasks",
            subcategory="GRN inference",
            labels={"dataset": "{dataset}", "result": "prior sweep: {variant}"},
        ),
    log:
        "results/logs/tasks/grn/{dataset}/prior_sweep_{variant}.log",
    benchmark:
        "results/benchmarks/tasks/grn/{dataset}/prior_sweep_{variant}.tsv"
    wildcard_constraints:
        dataset=grn_dataset_pattern(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        task=config["tasks"].get("grn", {}),
        species=lambda wildcards: grn_dataset(wildcards.dataset)["species"],
    script:
        "../scripts/grn_prior_sweep.py"


rule grn_summary:
    input:
        metrics=lambda wildcards: [
            f"results/tasks/grn/{wildcards.dataset}/{method}/metrics.tsv" for method in grn_method_names()
        ],
    output:
        table=report(
            "results/tasks/grn/{dataset}/metrics.tsv",
            caption="../workflow/report/grn_metrics.rst",
            category="4. Tasks",
            subcategory="GRN inference",
            labels={"dataset": "{dataset}", "result": "metrics table"},
        ),
        figure=report(
            "results/tasks/grn/{dataset}/methods.png",
            caption="../workflow/report/grn_methods.rst",
            category="4. Tasks",
            subcategory="GRN inference",
            labels={"dataset": "{dataset}", "result": "methods"},
        ),
    log:
        "results/logs/tasks/grn/{dataset}/summary.log",
    benchmark:
        "results/benchmarks/tasks/grn/{dataset}/summary.tsv"
    wildcard_constraints:
        dataset=grn_dataset_pattern(),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        methods=grn_method_names(),
    script:
        "../scripts/grn_summary.py"


rule grn_ugrn:
    input:
        datasets=lambda wildcards: [f"results/tasks/grn/{name}/input" for name in grn_datasets()],
        model="results/model/{variant}/model",
        dictionary=embedding_dictionary,
    output:
        table="results/tasks/grn/ugrn/{variant}.tsv",
    log:
        "results/logs/tasks/grn/ugrn_{variant}.log",
    benchmark:
        "results/benchmarks/tasks/grn/ugrn_{variant}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["model"]
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=min(1, config["pretrain"]["gpus"]),
    params:
        task=config["tasks"].get("grn", {}),
        species={name: entry["species"] for name, entry in grn_datasets().items()},
        seed=config["seed"],
    script:
        "../scripts/grn_ugrn.py"


rule grn_deletion:
    input:
        dataset="results/tasks/grn/{dataset}/input",
        shards=lambda wildcards: model_shards(wildcards.variant, grn_dataset(wildcards.dataset)["samples"]),
        model="results/model/{variant}/model",
        dictionary=embedding_dictionary,
    output:
        table="results/tasks/grn/{dataset}/deletion/{variant}.tsv",
    log:
        "results/logs/tasks/grn/{dataset}/deletion_{variant}.log",
    benchmark:
        "results/benchmarks/tasks/grn/{dataset}/deletion_{variant}.tsv"
    wildcard_constraints:
        dataset=grn_dataset_pattern(),
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["model"]
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        task=config["tasks"].get("grn", {}),
        species=lambda wildcards: grn_dataset(wildcards.dataset)["species"],
        seed=config["seed"],
    script:
        "../scripts/grn_deletion.py"
