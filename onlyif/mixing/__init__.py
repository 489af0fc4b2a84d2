"""Pure logic of real-data mixtures: record normalization, dedup keys, decontamination n-grams, budgets,
k-center selection and diversity metrics. Nothing here imports Ray; ``onlyif.data`` runs it on Ray Data."""
