"""The explainer plugin contract: ``Explanation`` results, ``ExplainerSpec``/``Param``/``Explainer``, the registry
and entry-point discovery, the runner, ``explain()``, the conformance harness and the scaffold."""
