"""Dry-run plans: one task on one dataset, the named target rules, --forcerun, and parameter changes.

Every test reads the job list of ``snakemake -n`` (one block per planned job: rule,
wildcards, input, output, reason) and asserts which jobs are planned and which are not.
The rerun tests plan against a "complete" working directory: every output exists, is
newer than its inputs, and has the provenance record (params, code, input set,
software env) that Snakemake keeps in .snakemake/metadata, without running any job.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, snakemake_command

pytestmark = pytest.mark.workflow

SAMPLES = ["human_s1", "human_s2", "human_s3", "mouse_s1", "mouse_s2"]
NAMED_RULES = ["stage_qc", "stage_tokens", "stage_knowledge", "stage_pretrain", "stage_embeddings",
               "task_came", "task_annotation", "task_grn", "task_perturbation", "task_cpa", "task_deepce",
               "task_dosage", "task_insilico", "summary", "own_data"]

# Rule groups of the demo DAG.
REFERENCES = {"simulate_world", "gene_table", "orthologs"}
DICTIONARY = {"token_dictionary"}
CORPUS = {"gene_histogram", "gene_medians", "tokenize", "corpus"}
KNOWLEDGE = {"grn_network", "gene_families", "coexpression_pairs", "gene2vec_embedding",
             "promoter_sequences", "promoter_embedding", "knowledge"}
PRETRAINED = REFERENCES | {"qc"} | DICTIONARY | CORPUS | KNOWLEDGE | {"pretrain"}
GENE_EMBEDDINGS = {"embed_sample", "gene_embeddings"}
# The demo's model.source: the main variant exported in the released layout and imported back.
RELEASED = {"export_released", "import_released", "released_tokenize"}
CONTROLS = {"untrained_model"}
GRN = {"grn_dataset", "grn_infer", "grn_prior_sweep", "grn_summary", "grn_ugrn", "grn_deletion"}
TASKS = GRN | {"came", "annotate"}
# What runs before the knowledge embeddings (none of it depends on them).
UPSTREAM_OF_KNOWLEDGE = (REFERENCES | {"qc", "qc_summary"} | DICTIONARY | CORPUS | KNOWLEDGE
                         - {"gene2vec_embedding", "knowledge"})


@dataclass
class Job:
    rule: str
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def wildcards(self) -> dict[str, str]:
        pairs = self.fields.get("wildcards", "")
        return dict(pair.split("=", 1) for pair in pairs.split(", ")) if pairs else {}

    @property
    def input(self) -> list[str]:
        return self.fields["input"].split(", ") if self.fields.get("input") else []

    @property
    def output(self) -> list[str]:
        return self.fields["output"].split(", ") if self.fields.get("output") else []

    @property
    def reason(self) -> str:
        return self.fields.get("reason", "")


def snakemake(workdir: Path, *args: str, overlay: dict | None = None, targets: tuple[str, ...] = ()):
    """Snakemake on the demo config in ``workdir``, ``overlay`` layered on top as a second config file."""
    configfiles = [str(ROOT / "config" / "config.yaml")]
    if overlay:
        path = workdir.parent / f"{workdir.name}.overlay.yaml"
        path.write_text(yaml.safe_dump(overlay))
        configfiles.append(str(path))
    command = snakemake_command(workdir, configfiles=configfiles, extra=(*args, "--", *targets))
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def parse_jobs(output: str) -> list[Job]:
    """The job blocks of Snakemake's log, in the order printed."""
    jobs, current = [], None
    for line in output.splitlines():
        start = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):$", line)
        entry = re.match(r"^    (\w+): (.*)$", line)
        if start:
            current = Job(start.group(1))
            jobs.append(current)
        elif entry and current is not None:
            current.fields[entry.group(1)] = entry.group(2)
        else:
            current = None
    return jobs


def job_stats(output: str) -> Counter:
    """Rule -> job count from the first 'Job stats' table (empty when nothing is to be done)."""
    counts, inside = Counter(), False
    for line in output.splitlines():
        if line.startswith("Job stats:"):
            inside = True
        elif inside:
            row = re.match(r"^(\w+)\s+(\d+)$", line)
            if row and row.group(1) == "total":
                break
            if row:
                counts[row.group(1)] = int(row.group(2))
    return counts


def plan(workdir: Path, *targets: str, options: tuple[str, ...] = (), overlay: dict | None = None) -> list[Job]:
    """The jobs ``snakemake -n`` plans for ``targets`` (the default target when none)."""
    result = snakemake(workdir, "-n", *options, overlay=overlay, targets=targets)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    jobs = parse_jobs(output)
    # The job blocks and the summary table agree: nothing was missed by the parser.
    assert Counter(job.rule for job in jobs) == job_stats(output), output[-5000:]
    if not jobs:
        assert "Nothing to be done" in output, output[-5000:]
    return jobs


def rules(jobs: list[Job]) -> set[str]:
    return {job.rule for job in jobs}


def values(jobs: list[Job], rule: str, wildcard: str) -> list[str]:
    return sorted(job.wildcards[wildcard] for job in jobs if job.rule == rule)


@pytest.fixture(scope="module")
def complete(tmp_path_factory) -> Path:
    """A working directory where the whole demo DAG is up to date, without running a job.

    ``snakemake --touch`` on an empty directory writes every job's provenance record but
    creates no file (it only touches outputs that exist); the outputs are then created in
    the order the jobs were touched, each a second newer than the previous job's, and
    all of them newer than the scripts (a script newer than its outputs re-runs its rule).
    """
    workdir = tmp_path_factory.mktemp("complete")
    result = snakemake(workdir, "--touch")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    jobs = parse_jobs(output)
    assert "all" in rules(jobs) and len(jobs) > 100, output[-5000:]
    start = time.time() - len(jobs) - 1
    for order, job in enumerate(jobs):
        for name in job.output:
            path = workdir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if "." in path.name:  # the demo's directory() outputs have no suffix
                path.touch()
            else:
                path.mkdir(exist_ok=True)
            os.utime(path, (start + order, start + order))
    return workdir


# ---- one task on one dataset ----

@pytest.mark.parametrize("target, expected, jobs_of", [
    ("results/tasks/grn/demo_human/pearson/metrics.tsv",
     {"simulate_world", "gene_table", "qc", "grn_dataset", "grn_infer"},
     {("grn_infer", "method"): ["pearson"], ("grn_dataset", "dataset"): ["demo_human"],
      ("qc", "sample"): ["human_s1", "human_s2"], ("gene_table", "species"): ["human"]}),
    ("results/tasks/grn/demo_mouse/cosine_no_knowledge/metrics.tsv",
     PRETRAINED | GENE_EMBEDDINGS | {"grn_dataset", "grn_infer"},
     {("grn_infer", "method"): ["cosine_no_knowledge"], ("grn_dataset", "dataset"): ["demo_mouse"],
      ("pretrain", "variant"): ["no_knowledge"], ("gene_embeddings", "variant"): ["no_knowledge"],
      ("embed_sample", "variant"): ["no_knowledge"] * len(SAMPLES)}),
    ("results/tasks/annotation/demo_human/logistic_regression/metrics.json",
     REFERENCES | {"qc"} | DICTIONARY | {"gene_histogram", "gene_medians", "tokenize", "annotate"},
     {("annotate", "method"): ["logistic_regression"], ("tokenize", "sample"): ["human_s1", "human_s2"]}),
])
def test_one_task_on_one_dataset_plans_only_what_it_needs(tmp_path, target, expected, jobs_of):
    jobs = plan(tmp_path, target)
    assert rules(jobs) == expected
    for (rule, wildcard), wanted in jobs_of.items():
        assert values(jobs, rule, wildcard) == wanted, (rule, wildcard)
    task_jobs = [job for job in jobs if job.rule in TASKS]
    dataset = target.split("/")[3]
    assert all(job.wildcards["dataset"] == dataset for job in task_jobs)
    assert [job for job in task_jobs if target in job.output]


# ---- named target rules ----

@pytest.mark.parametrize("name, expected, counts", [
    ("stage_qc", {"simulate_world", "gene_table", "qc", "qc_summary"}, {"qc": len(SAMPLES)}),
    ("stage_tokens", REFERENCES | {"qc"} | DICTIONARY | CORPUS, {"tokenize": len(SAMPLES)}),
    ("stage_knowledge", REFERENCES | {"qc"} | DICTIONARY | KNOWLEDGE, {"gene2vec_embedding": 6}),
    ("stage_pretrain", PRETRAINED | {"export_released", "import_released"}, {"pretrain": 2}),
    ("stage_embeddings", PRETRAINED | GENE_EMBEDDINGS | RELEASED | {"untrained_model", "cell_embeddings",
                                                                    "embedding_analysis"}, {"gene_embeddings": 3}),
    # every task: the source model and its controls (the no-knowledge variant, the untrained model)
    ("task_came", PRETRAINED | GENE_EMBEDDINGS | RELEASED | CONTROLS | {"came"}, {"came": 4, "pretrain": 2}),
    ("task_annotation", PRETRAINED | RELEASED | {"annotate"}, {"annotate": 8, "pretrain": 2}),
    ("task_grn", PRETRAINED | GENE_EMBEDDINGS | RELEASED | CONTROLS | GRN, {"grn_infer": 26, "pretrain": 2}),
    ("task_cpa", PRETRAINED | GENE_EMBEDDINGS | RELEASED | CONTROLS | {"simulate_drug_screen", "cpa_prepare",
                                                                      "cpa_predict", "cpa_evaluate"},
     {"cpa_predict": 6, "pretrain": 2}),
    ("task_deepce", PRETRAINED | GENE_EMBEDDINGS | RELEASED | CONTROLS | {"simulate_drug_screen", "deepce_prepare",
                                                                         "deepce_predict", "deepce_evaluate"},
     {"deepce_predict": 6, "pretrain": 2}),
    ("task_dosage", PRETRAINED | RELEASED | {"simulate_insilico_truth", "dosage_finetune", "dosage_logistic",
                                             "dosage_evaluate"}, {"dosage_finetune": 3, "pretrain": 2}),
    ("task_insilico", PRETRAINED | RELEASED | CONTROLS | {"simulate_insilico_truth", "insilico_deletion",
                                                          "insilico_state_shift", "insilico_candidates"},
     {"insilico_candidates": 3, "pretrain": 2}),
    # the plain path: QC, the source's tokens and embeddings, figures; the demo's source needs its pretraining
    ("own_data", PRETRAINED | RELEASED | GENE_EMBEDDINGS | {"qc_summary", "qc_figure", "cell_embeddings",
                                                           "embedding_figure"}, {"pretrain": 1}),
])
def test_named_target_rule_plans_its_stage_and_nothing_downstream(tmp_path, name, expected, counts):
    jobs = plan(tmp_path, name)
    assert [job.rule for job in jobs].count(name) == 1
    assert rules(jobs) - {name} == expected
    planned = Counter(job.rule for job in jobs)
    assert {rule: planned[rule] for rule in counts} == counts


def test_named_target_rules_together_request_what_all_requests(tmp_path):
    jobs = plan(tmp_path, "all", *NAMED_RULES)
    requested = {job.rule: job.input for job in jobs if job.rule in {"all", *NAMED_RULES}}
    assert set(requested) == {"all", *NAMED_RULES}
    named = [path for name in NAMED_RULES for path in requested[name]]
    assert set(requested["all"]) <= set(named)
    # beyond `all`, only the per-sample QC files (which the QC summary's jobs write anyway)
    assert set(named) - set(requested["all"]) == {f"results/qc/{sample}.h5ad" for sample in SAMPLES}


# ---- reruns on a complete working directory ----

def test_complete_workflow_plans_nothing(complete):
    assert plan(complete) == []
    assert plan(complete, "task_grn") == []


def test_forcerun_of_one_knowledge_job_reruns_only_what_depends_on_it(complete):
    jobs = plan(complete, options=("--forcerun", "results/knowledge/family_human.safetensors"))
    forced = [job for job in jobs if job.rule == "gene2vec_embedding"]
    assert [job.wildcards for job in forced] == [{"kind": "family", "species": "human"}]
    assert "Forced execution" in forced[0].reason
    assert rules(jobs) == {"gene2vec_embedding", "knowledge", "pretrain", "untrained_model", "embed_sample",
                           "export_released", "import_released", "released_tokenize", "embedding_figure",
                           "cell_embeddings", "gene_embeddings", "embedding_analysis", "came", "annotate",
                           "grn_infer", "grn_prior_sweep", "grn_summary", "grn_ugrn", "grn_deletion",
                           "perturbation_predict", "perturbation_evaluate", "cpa_predict", "cpa_evaluate",
                           "deepce_predict", "deepce_evaluate", "dosage_finetune", "dosage_logistic",
                           "dosage_evaluate", "insilico_deletion", "insilico_state_shift", "insilico_candidates",
                           "summarise_task", "summary_table", "summary_overview", "all"}
    assert not rules(jobs) & UPSTREAM_OF_KNOWLEDGE
    assert "grn_dataset" not in rules(jobs)
    # downstream, only the methods that read a model or its embeddings: on the source (the demo's
    # imported export of the main variant) under their own names, on each control as <method>_<model>
    assert sorted(values(jobs, "came", "method")) == ["genecompass_came", "genecompass_came_no_knowledge",
                                                      "genecompass_came_untrained"]
    assert sorted(values(jobs, "annotate", "method")) == sorted(
        ["genecompass", "genecompass_no_knowledge", "genecompass_no_pretraining"] * 2)   # two datasets
    methods = set(values(jobs, "grn_infer", "method"))
    assert methods == {f"{kind}_{variant}" for kind in ("cosine", "deepsem_prior")
                       for variant in ("released", "genecompass", "no_knowledge", "untrained")}
    assert values(jobs, "pretrain", "variant") == ["genecompass", "no_knowledge"]
    gene_methods = {"genecompass_gears", *[f"{kind}_genecompass" for kind in ("random_forest", "elastic_net", "knn")]}
    assert set(values(jobs, "perturbation_predict", "method")) == {
        f"{method}{suffix}" for method in gene_methods for suffix in ("", "_no_knowledge", "_untrained")}
    assert sorted(values(jobs, "cpa_predict", "method")) == ["genecompass_cpa", "genecompass_cpa_no_knowledge",
                                                             "genecompass_cpa_untrained"]
    assert sorted(values(jobs, "deepce_predict", "method")) == [
        "genecompass_deepce", "genecompass_deepce_no_knowledge", "genecompass_deepce_untrained"]
    # every dosage fine-tuning reads a model folder (the no-pretraining control takes its config and knowledge)
    assert sorted(values(jobs, "dosage_finetune", "method")) == ["genecompass", "genecompass_no_knowledge",
                                                                 "genecompass_no_pretraining"]
    assert "simulate_insilico_truth" not in rules(jobs)


def test_forcerun_up_to_the_knowledge_assembly(complete):
    jobs = plan(complete, "results/knowledge/knowledge.safetensors",
                options=("--forcerun", "results/knowledge/family_human.safetensors"))
    assert [job.rule for job in jobs if job.rule != "gene2vec_embedding"] == ["knowledge"]
    assert [job.wildcards for job in jobs if job.rule == "gene2vec_embedding"] == [
        {"kind": "family", "species": "human"}]


@pytest.mark.parametrize("overlay, expected, changed", [
    # tasks.grn is one `task` param of every GRN job that reads it: all of their jobs re-run. The
    # prior sweep's reason is its DeepSEM input (Snakemake names one cause: an input that will be
    # rewritten is checked before params)
    ({"tasks": {"grn": {"genie3_trees": 10}}},
     {"grn_infer": 26, "grn_prior_sweep": 8, "grn_deletion": 8, "grn_ugrn": 4, "grn_summary": 2,
      "summarise_task": 1, "summary_table": 1, "all": 1},
     {"grn_infer", "grn_deletion", "grn_ugrn"}),
    ({"tasks": {"came": {"n_top_genes": 200}}}, {"came": 4, "summarise_task": 1, "summary_table": 1, "all": 1},
     {"came"}),
])
def test_changing_a_parameter_reruns_only_the_rules_that_use_it(complete, overlay, expected, changed):
    jobs = plan(complete, overlay=overlay)
    assert Counter(job.rule for job in jobs) == expected
    params = {job.rule for job in jobs if "Params have changed since last execution" in job.reason}
    assert params == changed
    # the rest re-run only because their input will be rewritten
    for job in jobs:
        if job.rule not in changed:
            assert job.reason.startswith("Input files updated by another job"), (job.rule, job.reason)
    # without the params trigger, a changed parameter re-runs nothing
    assert plan(complete, overlay=overlay, options=("--rerun-triggers", "mtime", "input", "code", "software-env")) == []
