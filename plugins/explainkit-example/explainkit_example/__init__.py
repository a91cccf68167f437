"""An example explainkit plugin. Importing this package does no work: see ``declarations``."""
