"""Stage 6, generation: continuing a seed with grammar-constrained decoding.

The user's words become Constraints and Sampling; the continuation state narrows
the grammar's allowed tokens to those that keep every musical constraint; the
runner samples from one or several models with their KV caches and writes takes.
"""
