"""Perturbation prediction: the demo Perturb-seq experiment, GEARS (with and without
GeneCompass gene embeddings), the baselines and the metrics of the benchmark."""
