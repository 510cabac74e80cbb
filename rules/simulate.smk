# The synthetic demo world (genecompass.simulate): references, raw counts
# in every supported format, and the planted truth tests check against.
# The Perturb-seq experiment, the drug screens and the in-silico truth are made from the same world.


SIMULATE_DIR = config["simulate"]["outdir"]


rule simulate_world:
    output:
        human_genes=f"{SIMULATE_DIR}/references/human_genes.tsv",
        mouse_genes=f"{SIMULATE_DIR}/references/mouse_genes.tsv",
        orthologs=f"{SIMULATE_DIR}/references/orthologs_biomart.csv",
        grn_human=f"{SIMULATE_DIR}/references/grn_human.tsv",
        grn_mouse=f"{SIMULATE_DIR}/references/grn_mouse.tsv",
        families=f"{SIMULATE_DIR}/references/hgnc_gene_groups.tsv",
        promoters_human=f"{SIMULATE_DIR}/references/promoters_human.fa",
        promoters_mouse=f"{SIMULATE_DIR}/references/promoters_mouse.fa",
        human_s1=f"{SIMULATE_DIR}/counts/human_s1.h5ad",
        human_s2=f"{SIMULATE_DIR}/counts/human_s2.h5ad",
        human_s3=f"{SIMULATE_DIR}/counts/human_s3.h5",
        mouse_s1=f"{SIMULATE_DIR}/counts/mouse_s1.h5ad",
        mouse_s2=directory(f"{SIMULATE_DIR}/counts/mouse_s2"),
        truth=directory(f"{SIMULATE_DIR}/truth"),
    log:
        "results/logs/simulate_world.log",
    benchmark:
        "results/benchmarks/simulate_world.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        # The world's root folder, two levels above a reference file.
        outdir=lambda wildcards, output: Path(output.human_genes).parent.parent,
        seed=config["seed"],
        world=config["simulate"].get("params", {}),
    script:
        "../scripts/simulate_world.py"


rule simulate_perturbseq:
    output:
        h5ad=f"{SIMULATE_DIR}/perturb/perturb_processed.h5ad",
        design=f"{SIMULATE_DIR}/perturb/design.tsv",
        interactions=f"{SIMULATE_DIR}/perturb/interactions_truth.tsv",
        go=f"{SIMULATE_DIR}/perturb/go_bp.gmt",
    log:
        "results/logs/simulate_perturbseq.log",
    benchmark:
        "results/benchmarks/simulate_perturbseq.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        outdir=lambda wildcards, output: Path(output.h5ad).parent,
        seed=config["seed"],
        world=config["simulate"].get("params", {}),
        perturbseq=config["simulate"].get("perturbseq", {}),
    script:
        "../scripts/simulate_perturbseq.py"


rule simulate_drug_screen:
    output:
        h5ad=f"{SIMULATE_DIR}/drug/sciplex_demo.h5ad",
        truth=f"{SIMULATE_DIR}/drug/dose_response_truth.tsv.gz",
        plate=f"{SIMULATE_DIR}/drug/l1000_demo.gct",
        smiles=f"{SIMULATE_DIR}/drug/drugs_smiles.csv",
        gene_vectors=f"{SIMULATE_DIR}/drug/gene_vectors.csv",
        mechanism=f"{SIMULATE_DIR}/drug/mechanism.tsv",
    log:
        "results/logs/simulate_drug_screen.log",
    benchmark:
        "results/benchmarks/simulate_drug_screen.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        outdir=lambda wildcards, output: Path(output.h5ad).parent,
        seed=config["seed"],
        world=config["simulate"].get("params", {}),
        drug_screen=config["simulate"].get("drug_screen", {}),
    script:
        "../scripts/simulate_drug_screen.py"


rule simulate_insilico_truth:
    output:
        labels=f"{SIMULATE_DIR}/insilico/dosage_sensitive_tfs.csv",
        reach=f"{SIMULATE_DIR}/insilico/dosage_reach.tsv",
        housekeeping=f"{SIMULATE_DIR}/insilico/housekeeping.tsv",
        drivers=f"{SIMULATE_DIR}/insilico/fate_drivers.tsv",
    log:
        "results/logs/simulate_insilico_truth.log",
    benchmark:
        "results/benchmarks/simulate_insilico_truth.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        outdir=lambda wildcards, output: Path(output.labels).parent,
        seed=config["seed"],
        world=config["simulate"].get("params", {}),
    script:
        "../scripts/simulate_insilico_truth.py"
