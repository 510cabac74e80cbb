"""Rule pretrain: masked-gene pre-training of one model variant.

A command-line script rather than a Snakemake `script:` so that the rule can
start it under `torchrun` (one process per GPU) as well as under `python`.
Checkpoints and the live log stay in --work (not a rule output, so Snakemake
keeps them when a run is interrupted); a re-run resumes from the last one.
"""

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="corpus folder (datasets.save_to_disk)")
    parser.add_argument("--knowledge", required=True, help="knowledge.safetensors")
    parser.add_argument("--dictionary", required=True, help="token dictionary TSV")
    parser.add_argument("--variant", required=True, help="name under model.variants")
    parser.add_argument("--model-section", required=True, help="the config's model section, as JSON")
    parser.add_argument("--pretrain-section", required=True, help="the config's pretrain section, as JSON")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    parser.add_argument("--work", required=True, help="folder for checkpoints and the live log")
    parser.add_argument("--out-model", required=True)
    parser.add_argument("--out-summary", required=True)
    parser.add_argument("--out-log", required=True)
    parser.add_argument("--out-figure", required=True)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    from genecompass.dictionary import read_dictionary
    from genecompass.knowledge.assemble import load_knowledge
    from genecompass.model import GeneCompassConfig
    from genecompass.pretrain import PretrainSettings, init_distributed, pretrain
    from genecompass.utils import atomic_output

    torch.set_num_threads(max(1, args.threads))
    rank, world_size, _ = init_distributed()
    model_section = json.loads(args.model_section)
    dictionary = read_dictionary(args.dictionary)
    knowledge = load_knowledge(args.knowledge, dictionary)
    config = GeneCompassConfig.for_variant(model_section, args.variant, len(dictionary), knowledge.dim)
    settings = PretrainSettings.from_config(json.loads(args.pretrain_section), args.seed,
                                            max_length=int(model_section["max_length"]))
    logging.info("variant %s: knowledge %s, values %s; %d process(es)", args.variant, config.knowledge_kinds,
                 config.use_values, world_size)
    summary = pretrain(args.corpus, args.work, config, knowledge if config.knowledge_kinds else None, settings)
    if rank == 0:
        work = Path(args.work)
        with atomic_output(args.out_model) as tmp:
            shutil.copytree(work / "model", tmp)
        for name, target in (("training_log.csv", args.out_log), ("loss.png", args.out_figure),
                             ("summary.json", args.out_summary)):
            with atomic_output(target) as tmp:
                shutil.copyfile(work / name, tmp)
        logging.info("done: %d steps, %.0f tokens/s, validation %s", summary["steps"],
                     summary["tokens_per_second"] or 0, summary["final_metrics"])
    if world_size > 1:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
