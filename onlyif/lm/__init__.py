"""Language-model plumbing shared by training and evaluation (no Ray): dataset folders, codecs, batches, model
directories, KV-cache decoding and response loss. ``train/`` and ``eval/`` both build on it; it imports neither."""
