"""The plugin's declaration: cheap to import (no torch, no algorithm code)."""
from explainkit import Capability, ExplainerSpec, Modality, Param, Task

FEATURE_ABLATION = ExplainerSpec(
    name="feature_ablation", title="Feature ablation",
    description="Removes one unit at a time (a pixel patch, a token, a tabular feature) and scores it by "
                "how much the target output drops. Needs only predictions, so it works for black boxes.",
    reference="Zeiler & Fergus 2014; captum.attr.FeatureAblation",
    modalities=frozenset(Modality), tasks=frozenset(Task), requires={Capability.PREDICT},
    impl="explainkit_example.ablation:FeatureAblation",
    params=(Param("patch_size", "int", 2, min=1, max=28,
                  help="Image units are square patches of this side; each pixel gets its patch's score."),))
