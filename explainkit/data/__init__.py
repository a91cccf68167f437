"""Data: ``Sample``, the word tokenizer, ``Dataset`` and its loaders, and the shipped slices (this folder)."""
