"""In-silico experiments with a pretrained GeneCompass: dosage sensitivity and quantitative perturbation."""
