"""Public path of the datasets (``ek.datasets.sample_data``, ``from explainkit.datasets import ...``).

The loaders live in :mod:`explainkit.data.datasets` and :mod:`explainkit.data.files`; this module keeps
the documented import path.
"""
from explainkit.data.datasets import (
    DATA_DIR,
    Dataset,
    breast_cancer,
    diabetes,
    from_arrays,
    from_dataframe,
    from_texts,
    from_torch,
    load_mnist,
    load_sst2,
    photos,
    sample_data,
)
from explainkit.data.files import load_path

__all__ = ["Dataset", "load_mnist", "load_sst2", "breast_cancer", "diabetes", "from_arrays", "from_dataframe",
           "from_texts", "from_torch", "sample_data", "load_path", "photos", "DATA_DIR"]
