"""Models: the adapter base, torch and black-box adapters, ``wrap``, the architectures, checkpoints,
training, the sample-model zoo, MiniLM and incremental inference."""
