"""Drug data shared by the CPA and DeepCE tasks: dose-response AnnData and L1000 plates (:mod:`.data`),
molecules from SMILES (:mod:`.molecules`) and the fingerprint ridge baseline (:mod:`.baselines`)."""
