"""Declarations of the built-in explainers: cheap to import (no captum, shap, lime or torch)."""
from explainkit import Capability as C
from explainkit import ExplainerSpec, Param
from explainkit import Modality as M
from explainkit import ResultKind as R
from explainkit import Task as T

ALL = frozenset(M)
BOTH = frozenset(T)
_GRAD = frozenset({C.GRADIENTS})
_PKG = "explainkit_builtins"
_IMAGE = (M.IMAGE,)          # Param.applies_to: forms and checks offer these only for image models
_TABULAR = (M.TABULAR,)

_BASELINE = Param("baseline", "choice", "default", choices=("default", "zero"),
                  help="Reference input: 'default' is a black image, padding tokens or the training mean.")

SALIENCY = ExplainerSpec(
    name="saliency", title="Saliency",
    description="Gradient of the target output with respect to the input. Fast, local and noisy; "
                "for text, gradients are taken at the token embeddings and summed per token.",
    reference="Simonyan et al. 2013, https://arxiv.org/abs/1312.6034",
    modalities=ALL, tasks=BOTH, requires=_GRAD, impl=f"{_PKG}.gradients:Saliency",
    params=(Param("abs", "bool", True, help="Take absolute gradients (captum's default)."),))

INPUT_X_GRADIENT = ExplainerSpec(
    name="input_x_gradient", title="Input × Gradient",
    description="Elementwise product of the input and the gradient of the target output. "
                "Signed; for text it is computed at the token embeddings.",
    reference="Shrikumar et al. 2016, https://arxiv.org/abs/1605.01713",
    modalities=ALL, tasks=BOTH, requires=_GRAD, impl=f"{_PKG}.gradients:InputXGradient")

INTEGRATED_GRADIENTS = ExplainerSpec(
    name="integrated_gradients", title="Integrated Gradients",
    description="Integrates gradients along a straight path from a baseline to the input; the "
                "attributions sum to f(input) - f(baseline) (completeness). For text, the path runs "
                "through the embedding layer and attributions are summed per token.",
    reference="Sundararajan et al. 2017, https://arxiv.org/abs/1703.01365",
    modalities=ALL, tasks=BOTH, requires=_GRAD, impl=f"{_PKG}.gradients:IntegratedGradients", additive=True,
    params=(Param("n_steps", "int", 50, min=2, max=5000, help="Number of integration steps."),
            Param("integration", "choice", "gausslegendre",
                  choices=("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right",
                           "riemann_middle"), help="Integral approximation (captum's 'method')."),
            Param("internal_batch_size", "int", 0, min=0, max=100000,
                  help="Steps evaluated per forward pass (0: automatic, about 64 inputs per pass)."),
            _BASELINE))

SMOOTHGRAD = ExplainerSpec(
    name="smoothgrad", title="SmoothGrad",
    description="Averages saliency maps over noisy copies of the input (captum NoiseTunnel), "
                "which removes much of the gradient's visual noise. Standard errors over the copies.",
    reference="Smilkov et al. 2017, https://arxiv.org/abs/1706.03825",
    modalities=ALL, tasks=BOTH, requires=_GRAD, impl=f"{_PKG}.gradients:SmoothGrad", stochastic=True,
    params=(Param("n_samples", "int", 25, min=1, max=1000, help="Noisy copies to average."),
            Param("stdevs", "float", 0.15, min=0.0, max=10.0,
                  help="Noise standard deviation, as a fraction of the input's value range."),
            Param("nt_type", "choice", "smoothgrad", choices=("smoothgrad", "smoothgrad_sq", "vargrad"),
                  help="How the noisy maps are combined.")))

GRADIENT_SHAP = ExplainerSpec(
    name="gradient_shap", title="Gradient SHAP",
    description="Expected gradients: integrated gradients averaged over random baselines and random "
                "points on the path, approximating SHAP values for differentiable models. Standard "
                "errors over the draws.",
    reference="Lundberg & Lee 2017, https://arxiv.org/abs/1705.07874",
    modalities=ALL, tasks=BOTH, requires=_GRAD, impl=f"{_PKG}.gradients:GradientShap", stochastic=True,
    params=(Param("n_samples", "int", 50, min=1, max=5000, help="Random draws per input."),
            Param("stdevs", "float", 0.0, min=0.0, max=10.0, help="Gaussian noise added to each draw."),
            Param("n_baselines", "int", 10, min=1, max=500,
                  help="Baselines: the default baseline plus noisy copies of it.")))

GRADCAM = ExplainerSpec(
    name="gradcam", title="Grad-CAM",
    description="Weights the last convolutional layer's feature maps by their pooled gradients, "
                "then upsamples the map to the input image. Coarse, class-discriminative.",
    reference="Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391",
    modalities={M.IMAGE}, tasks=BOTH, requires={C.GRADIENTS, C.CONV_LAYER}, impl=f"{_PKG}.gradcam:GradCam",
    params=(Param("relu", "bool", True, help="Keep only positive evidence (the paper's ReLU)."),))

OCCLUSION = ExplainerSpec(
    name="occlusion", title="Occlusion",
    description="Slides a patch of baseline values over the input and records the change in the "
                "target output: image patches, tokens, or single tabular features.",
    reference="Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901",
    modalities=ALL, tasks=BOTH, requires={C.PREDICT}, impl=f"{_PKG}.occlusion:Occlusion",
    params=(Param("window", "int", 0, min=0, max=1024,
                  help="Patch side in pixels, or tokens/features per window (0: 4 for images, else 1)."),
            Param("stride", "int", 0, min=0, max=1024, help="Step between windows (0: same as window)."),
            _BASELINE))

KERNEL_SHAP = ExplainerSpec(
    name="kernel_shap", title="Kernel SHAP",
    description="Model-agnostic Shapley values from a weighted linear regression over coalitions of "
                "features, tokens, or image patches/superpixels, with a standard error per unit: paired, "
                "size-stratified sampling (Covert & Lee 2021), exact enumeration when every coalition fits "
                "in the budget (by default up to 14 units).",
    reference="Lundberg & Lee 2017, https://arxiv.org/abs/1705.07874; Covert & Lee 2021, "
              "https://arxiv.org/abs/2012.01536",
    modalities=ALL, tasks=BOTH, requires={C.PREDICT}, impl=f"{_PKG}.shap_plugin:KernelShap", stochastic=True,
    params=(Param("n_samples", "int", 0, min=0, max=1_000_000,
                  help="Coalitions evaluated at most (0: every coalition up to 14 units, else 2*M+2048)."),
            Param("tolerance", "float", 0.0, min=0.0, max=1e6,
                  help="Stop once the largest standard error is below this (output units; 0: use the budget)."),
            Param("estimator", "choice", "paired", choices=("paired", "leverage", "shap"),
                  help="paired: budget shared by Shapley-kernel mass; leverage: equally per size "
                       "(Musco & Witter 2024); shap: shap.KernelExplainer (no standard errors)."),
            Param("segmentation", "choice", "patches", choices=("patches", "superpixels"),
                  help="Image units: square patches or SLIC superpixels.", applies_to=_IMAGE),
            Param("patch_size", "int", 4, min=1, max=64, help="Patch side in pixels (images).", applies_to=_IMAGE),
            Param("n_segments", "int", 50, min=2, max=1000, help="Superpixels per image (segmentation=superpixels).",
                  applies_to=_IMAGE),
            Param("n_background", "int", 50, min=1, max=2000, applies_to=_TABULAR,
                  help="Tabular background rows (k-means summary of the data; else the training mean)."),
            Param("l1_reg", "choice", "auto", choices=("auto", "none"),
                  help="Feature selection before the regression (shap's l1_reg; estimator='shap' only).")))

LIME = ExplainerSpec(
    name="lime", title="LIME",
    description="Fits a sparse weighted linear model to the predictions on perturbed copies of the "
                "input (the lime library): tabular features, text tokens, or image segments. Standard "
                "errors are the surrogate's robust (sandwich) coefficient errors.",
    reference="Ribeiro et al. 2016, https://arxiv.org/abs/1602.04938",
    modalities=ALL, tasks=BOTH, requires={C.PREDICT}, impl=f"{_PKG}.lime_plugin:Lime", stochastic=True,
    params=(Param("n_samples", "int", 1000, min=10, max=100_000, help="Perturbed samples."),
            Param("num_features", "int", 10, min=1, max=10_000, help="Features kept in the explanation."),
            Param("kernel_width", "float", 0.0, min=0.0, max=1000.0,
                  help="Proximity kernel width (0: lime's default for the modality)."),
            Param("segmentation", "choice", "patches", choices=("patches", "quickshift"),
                  help="Image units: square patches or lime's quickshift segments.", applies_to=_IMAGE),
            Param("patch_size", "int", 4, min=1, max=64, help="Patch side in pixels (images).", applies_to=_IMAGE)))

ATTENTION = ExplainerSpec(
    name="attention", title="Attention weights",
    description="The transformer's raw attention weights, per layer and head, over the real tokens. "
                "Per-token scores are the attention each token receives in the last layer, averaged.",
    reference="Vaswani et al. 2017; Clark et al. 2019, https://arxiv.org/abs/1906.04341",
    modalities={M.TEXT}, tasks=BOTH, requires={C.ATTENTION}, impl=f"{_PKG}.attention:Attention",
    result=R.ATTENTION)

ATTENTION_ROLLOUT = ExplainerSpec(
    name="attention_rollout", title="Attention rollout",
    description="Propagates attention through the layers: heads fused, the residual identity added, "
                "rows re-normalised, and the layers multiplied. Per-token scores are the rollout "
                "flowing into the pooled representation.",
    reference="Abnar & Zuidema 2020, https://arxiv.org/abs/2005.00928",
    modalities={M.TEXT}, tasks=BOTH, requires={C.ATTENTION}, impl=f"{_PKG}.attention:AttentionRollout",
    result=R.ATTENTION,
    params=(Param("head_fusion", "choice", "mean", choices=("mean", "max", "min"),
                  help="How heads are fused per layer (the paper averages)."),))

# -- generation explainers: a language model's answer, per answer token x prompt unit ---------------------
# They apply to language models only (result kind GENERATION; explainkit runs them through
# explainkit.plugins.generation). Every one also takes the generation inputs units=, max_new_tokens=,
# contrast= and target= (handled by explainkit, not declared here).
_G = "Scores are in log-probability units (nats) of each answer token and of the whole answer."

LM_FEATURE_ABLATION = ExplainerSpec(
    name="lm_feature_ablation", aliases=("feature_ablation",), title="Feature ablation (leave one unit out)",
    description="Deletes one prompt unit at a time and records the drop in each answer token's "
                "log-probability. " + _G,
    reference="captum FeatureAblation / LLMAttribution", modalities={M.TEXT}, tasks=BOTH, requires={C.PREDICT},
    impl=f"{_PKG}.generation:FeatureAblation", result=R.GENERATION, additive=False)

LM_SHAPLEY_VALUE_SAMPLING = ExplainerSpec(
    name="lm_shapley_value_sampling", aliases=("shapley_value_sampling",),
    title="Shapley value sampling over prompt units",
    description="Adds the prompt units in random orders and averages each unit's marginal effect on the "
                "answer's log-probabilities (Shapley values, estimated). " + _G,
    reference="Castro et al. 2009; captum ShapleyValueSampling", modalities={M.TEXT}, tasks=BOTH,
    requires={C.PREDICT}, impl=f"{_PKG}.generation:ShapleyValueSampling", result=R.GENERATION, stochastic=True,
    params=(Param("n_samples", "int", 25, min=1, max=10_000, help="Random unit orders (permutations)."),))

LM_INPUT_X_GRADIENT = ExplainerSpec(
    name="lm_input_x_gradient", aliases=("input_x_gradient",), title="Input × Gradient (language model)",
    description="Token embedding times the gradient of each answer token's log-probability, summed over "
                "a unit's tokens. " + _G,
    reference="Shrikumar et al. 2016; captum LayerGradientXActivation / LLMGradientAttribution",
    modalities={M.TEXT}, tasks=BOTH, requires={C.GRADIENTS, C.EMBEDDINGS},
    impl=f"{_PKG}.generation:InputXGradient", result=R.GENERATION)

LM_INTEGRATED_GRADIENTS = ExplainerSpec(
    name="lm_integrated_gradients", aliases=("integrated_gradients",), title="Integrated Gradients (language model)",
    description="Integrates the gradients of each answer token's log-probability along the path from the "
                "baseline at the unit positions to the prompt's embeddings (the template's tokens held "
                "fixed); batched by memory. " + _G,
    reference="Sundararajan et al. 2017, https://arxiv.org/abs/1703.01365; captum LayerIntegratedGradients / "
              "LLMGradientAttribution", modalities={M.TEXT}, tasks=BOTH,
    requires={C.GRADIENTS, C.EMBEDDINGS}, impl=f"{_PKG}.generation:IntegratedGradients", result=R.GENERATION,
    params=(Param("n_steps", "int", 50, min=1, max=1000, help="Path points (Gauss-Legendre)."),
            Param("baseline", "choice", "zero", choices=("zero", "token0"),
                  help="Where the units' path starts: 'zero' embeddings (default: no token at all), or "
                       "'token0', the embedding of token id 0 (captum's TextTokenInput baseline; gives "
                       "LLMGradientAttribution(LayerIntegratedGradients)'s numbers).")))

LM_ATTENTION = ExplainerSpec(
    name="lm_attention", aliases=("attention",), title="Attention, last layer (language model)",
    description="The last layer's attention, averaged over heads, from the position predicting each answer "
                "token to each prompt unit (summed over its tokens). Weights, not log-probabilities.",
    reference="Vaswani et al. 2017", modalities={M.TEXT}, tasks=BOTH, requires={C.ATTENTION},
    impl=f"{_PKG}.generation:LastLayerAttention", result=R.GENERATION)

LM_ATTENTION_ROLLOUT = ExplainerSpec(
    name="lm_attention_rollout", aliases=("attention_rollout",), title="Attention rollout (language model)",
    description="Attention propagated through all layers (heads averaged, residual added, rows "
                "re-normalised) from each answer position to the prompt units. Weights, not log-probabilities.",
    reference="Abnar & Zuidema 2020, https://arxiv.org/abs/2005.00928", modalities={M.TEXT}, tasks=BOTH,
    requires={C.ATTENTION}, impl=f"{_PKG}.generation:AttentionRollout", result=R.GENERATION,
    params=(Param("residual", "float", 0.5, min=0.0, max=1.0, help="Weight of the residual identity."),))
