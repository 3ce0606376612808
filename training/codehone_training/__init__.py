"""Training side of codehone: corpus, pretraining, fine-tuning, export, evaluation."""
