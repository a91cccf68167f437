"""explainkit's built-in explainers. Importing this package does no work: see ``declarations``."""
