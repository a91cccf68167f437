"""An explainer's parameter form: one control per declared ``Param`` that applies to the model.

Numbers are plain text boxes, never ipywidgets' ``Bounded*Text`` (which clamp a typed value silently): an
out-of-range value is kept as typed, the box is marked ``ek-param-invalid`` with the range in its tooltip,
and the run it would start is refused by the declaration with the same range (one ParameterError).
"""
from __future__ import annotations

import traitlets

from explainkit.errors import ParameterError, UnknownNameError

__all__ = ["Form", "param_form", "param_widget", "set_form"]

INVALID = "ek-param-invalid"          # the CSS class of a control holding a value its declaration refuses


class Form(dict):
    """``{parameter name: control}`` for the parameters of ``spec`` that apply to ``model``."""

    def __init__(self, controls: dict, spec=None, model=None):
        super().__init__(controls)
        self.spec, self.model = spec, model


def param_form(spec, model) -> Form:
    """The form of ``spec`` for ``model``: only the parameters that apply (``Param.applies_to``)."""
    return Form({p.name: param_widget(p, spec.name) for p in spec.params_for(model)}, spec, model)


def set_form(form: dict, method: str, values: dict) -> None:
    """Set a method's form controls by parameter name, as a user would. Nothing is set unless every value
    passes: an unknown name, a parameter that does not apply to the form's model, or a value of the wrong
    type or out of range is one error naming it (values are never clamped)."""
    spec, values = getattr(form, "spec", None), dict(values)
    if spec is not None:
        coerced = spec.validate_params(values, model=form.model)
        values = {k: coerced[k] for k in values}
    unknown = sorted(set(values) - set(form))
    if unknown:
        raise UnknownNameError(f"{method} has no parameter(s) {unknown}.", f"use: {sorted(form) or 'none'}.")
    for k, v in values.items():
        p = getattr(form[k], "ek_param", None)
        if p is not None:
            values[k] = p.validate(v, method)
    for k, v in values.items():
        form[k].value = v


def _num(v) -> str:
    return f"{int(v):,}" if float(v).is_integer() else f"{v:g}"


def _range(p) -> str:
    return f"[{'-∞' if p.min is None else _num(p.min)}, {'∞' if p.max is None else _num(p.max)}]"


def param_widget(p, owner: str = "explainer"):
    """A form control for one declared Param: int/float text (range in the tooltip, never clamped), bool,
    choice, str. ``control.ek_param`` is the Param; ``control.min``/``.max`` its declared range."""
    import ipywidgets as W
    numeric = p.type in ("int", "float")
    tip = (p.help + (f" Allowed: {_range(p)}." if numeric and (p.min is not None or p.max is not None) else "")
           ).strip()
    common = {"description": p.name, "tooltip": tip, "style": {"description_width": "130px"},
              "layout": W.Layout(width="300px")}
    if p.type == "bool":
        w = W.Checkbox(value=bool(p.default), indent=False, **common)
    elif p.type == "choice":
        w = W.Dropdown(options=list(p.choices), value=p.default, **common)
    elif numeric:
        w = (W.IntText if p.type == "int" else W.FloatText)(value=p.default, **common)
        w.add_traits(min=traitlets.Any(p.min), max=traitlets.Any(p.max))
        help_tip = tip

        def check(change, w=w) -> None:
            try:
                p.validate(change["new"], owner)
            except ParameterError as e:
                w.add_class(INVALID)
                w.tooltip = f"Refused: {e.problem} Allowed: {_range(p)}."
                return
            w.remove_class(INVALID)
            w.tooltip = help_tip
        w.observe(check, names="value")
    else:
        w = W.Text(value=str(p.default), continuous_update=False, **common)
    w.ek_param = p
    w.add_class(f"ek-param-{p.name}")
    return w
