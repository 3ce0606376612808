"""Training data: the pretraining corpus, a project's files (collect, deduplicate, split) and
the packed token rows fine-tuning reads."""
