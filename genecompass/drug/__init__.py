"""Drug response: the demo dose-response and L1000-like experiments, CPA and DeepCE
(each with and without GeneCompass gene embeddings), the baselines and the metrics."""
