"""Stage 5, training: pretraining and fine-tuning GPT-2 on a corpus, checkpoints,
metrics, evaluation and the n-gram baselines. Imports torch.
"""
