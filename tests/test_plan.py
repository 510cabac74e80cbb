"""What a configuration asks for (genecompass.plan): downloads, promoter sources, knowledge species,
the summary's entries."""

from __future__ import annotations

import pytest

from genecompass import plan

SHA = "0" * 64


def test_reference_file_is_the_path_or_the_download_target(tmp_path):
    local = tmp_path / "grn.tsv"
    local.write_text("x")
    assert plan.reference_file(str(local), "cache") == str(local)
    entry = {"url": "https://example.org/data/grn.tsv.gz", "sha256": SHA, "name": "TRRUST", "layout": "trrust"}
    assert plan.locator(entry) == {"url": entry["url"], "sha256": SHA}
    assert plan.reference_file(entry, "cache") == "cache/grn.tsv.gz"
    assert plan.reference_file({**entry, "path": str(local)}, "cache") == str(local)  # the local copy wins


def test_downloads_lists_every_url_entry_without_a_local_copy(tmp_path):
    local = tmp_path / "here.tsv"
    local.write_text("x")
    config = {
        "references": {"cache_dir": "cache", "human_genes": "genes.tsv",
                       "networks": {"human": [{"url": "https://x.org/a/trrust.tsv", "sha256": SHA, "name": "T"}],
                                    "mouse": [{"url": "https://x.org/b/local.tsv", "sha256": SHA,
                                               "path": str(local)}]}},
        "tasks": {"cpa": {"datasets": [{"name": "d", "data": {"url": "https://x.org/sciplex.h5ad", "sha256": SHA},
                                        "smiles": "smiles.csv"}]}},
    }
    found = plan.downloads(config, "cache")
    assert found == {"trrust.tsv": {"url": "https://x.org/a/trrust.tsv", "sha256": SHA},
                     "sciplex.h5ad": {"url": "https://x.org/sciplex.h5ad", "sha256": SHA}}


def test_promoter_source_is_one_kind_with_all_its_keys():
    references = {"promoters": {"human": {"fasta": "p.fa", "epd_sequences": None, "epd_ensembl": None},
                                "mouse": None}}
    assert plan.promoter_source(references, "human") == {"fasta": "p.fa"}
    assert plan.promoter_source(references, "mouse") is None
    with pytest.raises(ValueError, match=r"references.promoters.human has keys \['epd_sequences', 'fasta'\]"):
        plan.promoter_source({"promoters": {"human": {"fasta": "p.fa", "epd_sequences": "s.txt"}}}, "human")
    with pytest.raises(ValueError, match="give exactly one source"):  # half of a two-file source
        plan.promoter_source({"promoters": {"human": {"genome": "g.fa"}}}, "human")


def test_knowledge_species_follow_the_inputs_the_config_gives():
    references = {"networks": {"human": ["grn.tsv"], "mouse": []}, "gene_groups": "hgnc.tsv",
                  "promoters": {"human": {"fasta": "p.fa"}}}
    by_species = {"human": ["h1"], "mouse": []}
    assert plan.knowledge_species(references, "grn", by_species) == ["human"]
    assert plan.knowledge_species(references, "family", by_species) == ["human", "mouse"]
    assert plan.knowledge_species(references, "coexpression", by_species) == ["human"]
    assert plan.knowledge_species(references, "promoter", by_species) == ["human"]
    assert plan.knowledge_species({"networks": {}}, "family", by_species) == []


def test_summary_entries_name_the_task_results_by_dataset():
    targets = {
        "annotation": ["results/tasks/annotation/a/genecompass/metrics.json"],
        "grn": ["results/tasks/grn/g/metrics.tsv", "results/tasks/grn/g/prior_sweep/untrained.tsv",
                "results/tasks/grn/ugrn/untrained.tsv"],
        "insilico": ["results/tasks/insilico/i/deletion_tests.tsv", "results/tasks/insilico/i/candidates.tsv"],
        "dosage": ["results/tasks/dosage/metrics.tsv"],
        "came": [],
    }
    entries = plan.summary_entries(targets, "refs/dosage_sensitive_tfs.csv", ("annotation", "came", "grn",
                                                                               "dosage", "insilico"))
    assert list(entries) == ["annotation", "grn", "dosage", "insilico"]  # tasks without results are left out
    assert entries["grn"] == [{"task": "grn", "dataset": "g", "path": "results/tasks/grn/g/metrics.tsv"}]
    assert entries["insilico"] == [{"task": "insilico", "dataset": "i", "path": "results/tasks/insilico/i"}]
    assert entries["dosage"][0]["dataset"] == "dosage_sensitive_tfs"


MODEL = {"variants": {"genecompass": {}, "no_knowledge": {"knowledge": []}}}
RELEASED = {"checkpoint": "GeneCompass_Base", "token_dictionary": "tokens.pickle",
            "medians": {"human": "h.pickle", "mouse": "m.pickle"}}


def test_the_tasks_run_on_the_source_and_its_controls():
    assert plan.task_models(MODEL) == ["genecompass", "no_knowledge", "untrained"]
    assert plan.task_models({**MODEL, "source": "no_knowledge"}) == ["no_knowledge", "genecompass", "untrained"]
    assert plan.task_models({**MODEL, "source": RELEASED}) == ["released", "genecompass", "no_knowledge",
                                                               "untrained"]
    # the demo imports its own main variant's export: the imported copy stands for it
    exported = {**RELEASED, "checkpoint": "results/model/genecompass/released"}
    assert plan.exported_variant({**MODEL, "source": exported}) == "genecompass"
    assert plan.task_models({**MODEL, "source": exported}) == ["released", "no_knowledge", "untrained"]
    assert plan.task_models({**MODEL, "controls": ["untrained"]}) == ["genecompass", "untrained"]
    with pytest.raises(ValueError, match="not a variant"):
        plan.source_model({**MODEL, "source": "bert"})
    with pytest.raises(ValueError, match="model.controls"):
        plan.control_models({**MODEL, "controls": ["genecompass"]})


def test_method_names_carry_the_control_model_and_parse_back():
    methods = ("came", "genecompass_came")
    assert plan.method_name("genecompass_came", "genecompass", MODEL) == "genecompass_came"
    assert plan.method_name("genecompass_came", "no_knowledge", MODEL) == "genecompass_came_no_knowledge"
    assert plan.method_model("genecompass_came_untrained", methods, MODEL) == ("genecompass_came", "untrained")
    assert plan.method_model("came", methods, MODEL) == ("came", "genecompass")
    with pytest.raises(ValueError, match="none of"):
        plan.method_model("genecompass_came_bert", methods, MODEL)


def test_downloads_include_a_released_checkpoint_given_by_url():
    source = {"checkpoint": {"url": "https://x.org/GeneCompass_Base.tar.gz", "sha256": SHA},
              "token_dictionary": {"url": "https://x.org/tokens.pickle", "sha256": SHA},
              "medians": {"human": "local.pickle"}}
    found = plan.downloads({"references": {}, "model": {**MODEL, "source": source}}, "cache")
    assert set(found) == {"GeneCompass_Base.tar.gz", "tokens.pickle"}
