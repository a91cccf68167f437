"""Grad-CAM on captum: the last convolutional layer's maps weighted by pooled gradients, upsampled to the image."""
from __future__ import annotations

from explainkit import Explainer
from explainkit.errors import NotApplicableError

from .gradients import Batch, captum_attr, guarded

__all__ = ["GradCam"]

UPSAMPLE_MODE = "bilinear"


class GradCam(Explainer):
    """Class-discriminative map from the model's conv layer, bilinearly upsampled to the input's H×W."""

    def explain(self, model, samples, targets, *, seed: int = 0, relu: bool = True):
        ca = captum_attr()
        layer = getattr(model, "conv_layer", None)
        if layer is None:       # the declaration requires CONV_LAYER; this guards direct calls
            raise NotApplicableError(f"gradcam needs a convolutional layer; model {model.name!r} has none.",
                                     "use a CNN, pass conv_layer= to explainkit.wrap, or choose saliency.")
        with guarded(model, freeze=True):      # no graph below the layer: only its gradient is needed
            batch = Batch(model, samples, targets)
            cam = ca.LayerGradCam(model.forward, layer).attribute(
                batch.inputs, target=batch.targets, additional_forward_args=batch.forward_args,
                relu_attributions=relu)                                          # [N,1,h,w]
            size = tuple(int(d) for d in batch.inputs.shape[-2:])
            up = ca.LayerAttribution.interpolate(cam, size, UPSAMPLE_MODE)      # [N,1,H,W]
            out = batch.explanations(up)                                         # scores: [H,W]
        low = cam.detach().cpu().double().numpy()
        for exp, c in zip(out, low):
            exp.extras["cam"] = c[0]                    # the layer-resolution map [h,w]
            exp.extras["layer_shape"] = list(c.shape[-2:])
        return out
