"""The mnist-gan family: a small DCGAN whose checkpoint holds both networks.

The checkpoint module, :class:`MnistGAN`, holds ``generator`` and ``discriminator``. Its ``forward`` is
the discriminator, so the adapter that ``load_sample("mnist-gan")`` returns explains the discriminator
like any other image model; :func:`generate` (or ``model.module.generate``) samples digits from the
generator. The shipped one is class-conditional (``n_classes=10``, trained as an AC-GAN, Odena et al.
2017): the generator takes a latent and a digit class, while the discriminator still takes the image
alone (its auxiliary digit classifier is used only in training), so the explained model is unchanged.
``n_classes=0`` is the plain unconditional DCGAN.

**Why a 2-class classifier ("fake", "real") with logits ``[-d/2, d/2]``.** The discriminator has one
raw "real" logit ``d`` and was trained with ``BCEWithLogits``, so ``sigmoid(d)`` is its probability that
the digit is real. ``softmax([-d/2, d/2])`` is exactly ``[1 - sigmoid(d), sigmoid(d)]``: the adapter's
probabilities are the discriminator's own, its confidence is how sure the discriminator is, and the
"real" minus "fake" logit is ``d``. Both targets carry the signal (the "fake" attributions are the
"real" ones negated), so explaining the predicted class of a digit called fake is never the
gradient of a constant, as it would be with logits ``[0, d]``; ``[-d, d]`` would report
``sigmoid(2d)``, a probability the discriminator never gave. The attributions to "real" are those of
``d / 2``: the discriminator logit on a fixed scale of one half (IG completeness: they sum to
``(d(x) - d(baseline)) / 2``). A dashboard over real digits labelled "real" and generated ones
labelled "fake" (:func:`real_and_generated`) then shows the discriminator's accuracy, its confidence
and its most convincing fakes (sort by loss), which a one-output regression model could not.

Images are pixels in 0..1 normalized with ``MNIST_NORMALIZE`` (as ``TorchModel.prepare`` does); the
generator ends in a sigmoid (pixels in 0..1), and the normalization is applied before the
discriminator during training, so generated and real digits reach it the same way.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from explainkit.errors import InputError

__all__ = ["MnistGAN", "Generator", "Discriminator", "generate", "generated_dataset", "real_and_generated",
           "confident_fraction", "train_gan", "write_sample_data", "CLASSES", "METRIC"]

CLASSES = ["fake", "real"]
METRIC = "confident_fraction"          # share of generated digits mnist-cnn classifies with p >= CONFIDENCE
CONFIDENCE = 0.9
N_FLOOR, FLOOR_SEED = 1000, 0          # the held-out floor: 1,000 generated digits from seed 0
_MNIST_NORMALIZE = {"mean": [0.1307], "std": [0.3081]}    # families.MNIST_NORMALIZE (the family passes it)


class Generator(nn.Module):
    """[z, one-hot class] -> Linear -> c0x7x7 -> ConvT(c0->c1) 14x14 -> ConvT(c1->1) 28x28 -> sigmoid (0..1).

    With ``n_classes`` = 0 it is an unconditional DCGAN generator (z alone)."""

    def __init__(self, latent_dim: int = 64, channels=(128, 64), n_classes: int = 0):
        super().__init__()
        c0, c1 = (int(c) for c in channels)
        self.latent_dim, self.c0, self.n_classes = int(latent_dim), c0, int(n_classes)
        self.fc = nn.Sequential(nn.Linear(self.latent_dim + self.n_classes, c0 * 7 * 7, bias=False),
                                nn.BatchNorm1d(c0 * 7 * 7), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(c0, c1, 4, 2, 1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(),   # 7 -> 14
            nn.ConvTranspose2d(c1, 1, 4, 2, 1), nn.Sigmoid(),                               # 14 -> 28
        )

    def forward(self, z, labels=None):
        if self.n_classes:
            z = torch.cat([z, nn.functional.one_hot(labels, self.n_classes).to(z.dtype)], dim=1)
        return self.net(self.fc(z).view(-1, self.c0, 7, 7))


class Discriminator(nn.Module):
    """Normalized [N,1,28,28] -> Conv(1->c0) 14x14 -> Conv(c0->c1) [BatchNorm] 7x7 (LeakyReLU) -> Dropout ->
    Linear -> one "real" logit; with ``n_classes`` > 0 also an auxiliary digit classifier (AC-GAN) on the
    same features, used only in training. Its input is the image alone, so it is explained like any classifier."""

    def __init__(self, channels=(32, 64), dropout: float = 0.3, batchnorm: bool = False, n_classes: int = 0):
        super().__init__()
        c0, c1 = (int(c) for c in channels)
        self.features = nn.Sequential(
            nn.Conv2d(1, c0, 4, 2, 1), nn.LeakyReLU(0.2),        # 28 -> 14
            nn.Conv2d(c0, c1, 4, 2, 1, bias=not batchnorm),      # 14 -> 7
            *([nn.BatchNorm2d(c1)] if batchnorm else []), nn.LeakyReLU(0.2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c1 * 7 * 7, 1))
        self.classify = nn.Linear(c1 * 7 * 7, int(n_classes)) if n_classes else None

    def forward(self, x):
        return self.head(self.features(x))

    def both(self, x):
        """The "real" logit [N,1] and the auxiliary class logits [N,n_classes] (training), from one pass."""
        h = self.head[1](self.head[0](self.features(x)))
        return self.head[2](h), self.classify(h)


class MnistGAN(nn.Module):
    """Both networks in one checkpoint; ``forward`` is the discriminator as 2-class logits ``[-d/2, d/2]``."""

    def __init__(self, latent_dim: int = 64, g_channels=(128, 64), d_channels=(32, 64), dropout: float = 0.3,
                 d_batchnorm: bool = False, normalize: dict | None = None, n_classes: int = 0):
        super().__init__()
        nz = normalize or _MNIST_NORMALIZE
        self.latent_dim, self.n_classes = int(latent_dim), int(n_classes)
        self.generator = Generator(latent_dim, g_channels, n_classes=n_classes)
        self.discriminator = Discriminator(d_channels, dropout=dropout, batchnorm=d_batchnorm, n_classes=n_classes)
        self.register_buffer("mean", torch.tensor(float(nz["mean"][0])), persistent=False)
        self.register_buffer("std", torch.tensor(float(nz["std"][0])), persistent=False)

    def forward(self, x):
        d = self.discriminator(x)                       # [N,1]: the "real" logit
        return torch.cat([-0.5 * d, 0.5 * d], dim=1)    # softmax(...)[:, 1] == sigmoid(d)

    def real_logit(self, x):
        """The discriminator's raw "real" logit ``d`` [N] on normalized images."""
        return self.discriminator(x)[:, 0]

    def normalize_pixels(self, pixels):
        """Pixels in 0..1 -> the normalized input the discriminator (and every MNIST model) takes."""
        return (pixels - self.mean) / self.std

    def latent(self, n: int, seed: int = 0):
        """``n`` latent vectors drawn from N(0, 1) with a private generator seeded by ``seed``."""
        gen = torch.Generator().manual_seed(int(seed))
        return torch.randn(int(n), self.latent_dim, generator=gen)

    def labels(self, n: int, classes=None):
        """The digit class of each of ``n`` generated digits: ``classes`` (one int for all, or one per digit),
        by default 0, 1, ..., 9, 0, 1, ... (every class, balanced; a prefix of a longer run). None if
        unconditional."""
        if not self.n_classes:
            if classes is not None:
                raise InputError("This GAN is unconditional: it cannot generate digits of a requested class.",
                                 "leave classes=None (or use a class-conditional mnist-gan checkpoint).")
            return None
        if classes is None:
            return torch.arange(int(n)) % self.n_classes
        try:
            y = torch.as_tensor(np.asarray(classes, dtype=np.int64).reshape(-1))
        except (TypeError, ValueError):
            y = torch.full((int(n) + 1,), -1)            # not integers: the error below names what to pass
        if y.numel() == 1:
            y = y.expand(int(n))
        if y.numel() != int(n) or (y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.n_classes)):
            raise InputError(f"classes={classes!r} does not give one class in 0..{self.n_classes - 1} for each of "
                             f"{n} digits.", f"pass one int in 0..{self.n_classes - 1}, or a list of {n} of them.")
        return y.clone()

    @torch.no_grad()
    def generate_pixels(self, n: int, seed: int = 0, batch_size: int = 500, classes=None):
        """``n`` generated digits as float pixels in 0..1, ``[n, 28, 28]`` (eval mode; deterministic per seed)."""
        y = self.labels(n, classes)
        was = self.generator.training
        self.generator.eval()
        try:
            z = self.latent(n, seed)
            out = [self.generator(z[i:i + batch_size], None if y is None else y[i:i + batch_size])[:, 0]
                   for i in range(0, int(n), batch_size)]
        finally:
            self.generator.train(was)
        return torch.cat(out) if out else torch.zeros(0, 28, 28)

    def generate(self, n: int, seed: int = 0, classes=None) -> np.ndarray:
        """``n`` generated digits as uint8 pixels ``[n, 28, 28]``, like the shipped MNIST digits."""
        return _to_uint8(self.generate_pixels(n, seed, classes=classes))


def _to_uint8(pixels) -> np.ndarray:
    return np.clip(np.rint(pixels.detach().cpu().numpy() * 255.0), 0, 255).astype(np.uint8)


# -- the public helpers over a loaded adapter -----------------------------------------------------------

def _gan_module(model) -> MnistGAN:
    module = getattr(model, "module", model)
    if not isinstance(module, MnistGAN):
        raise InputError(f"{getattr(model, 'name', type(model).__name__)!r} is not a GAN: it has no generator.",
                         "pass the mnist-gan sample model (explainkit.load_sample('mnist-gan')) or a checkpoint "
                         "of the mnist-gan family.")
    return module


def generate(model, n: int, seed: int = 0, classes=None) -> np.ndarray:
    """``n`` digits from the generator of a mnist-gan model: uint8 ``[n, 28, 28]``, deterministic per seed.

    ``classes``: the digit to draw (one int, or one per digit); by default every class in turn (0, 1, ..., 9,
    0, ...). Only for a class-conditional checkpoint (the shipped one is)."""
    if int(n) < 0:
        raise InputError(f"Cannot generate {n} digits.", "pass n >= 0.")
    return _gan_module(model).generate(int(n), seed=seed, classes=classes)


def generated_dataset(model, n: int, seed: int = 0, label_with=None, name: str | None = None):
    """A Dataset of ``n`` generated digits (uint8 images), unlabelled, or labelled by a digit classifier.

    ``label_with``: an MNIST classifier (e.g. ``load_sample("mnist-cnn")``) whose predicted digits become
    the labels, so that a dashboard of that classifier can browse them by class.
    """
    from explainkit.data.datasets import MNIST_CLASSES, Dataset
    from explainkit.enums import Modality

    images = generate(model, n, seed)
    labels = None
    if label_with is not None:
        labels = label_with.predict(list(images)).argmax(axis=1).astype(np.int64)
    return Dataset(images, labels, modality=Modality.IMAGE, class_names=MNIST_CLASSES if labels is not None else None,
                   name=name or f"mnist-gan-generated-{n}-seed{seed}")


def real_and_generated(model, real, n_generated: int | None = None, seed: int = 0):
    """Real digits (labelled "real") followed by generated ones (labelled "fake"): data for the discriminator.

    ``real``: a Dataset of MNIST images (e.g. ``explainkit.datasets.sample_data("mnist")``);
    ``n_generated`` defaults to as many as there are real ones.
    """
    from explainkit.data.datasets import Dataset
    from explainkit.enums import Modality

    raws = np.asarray(real.raws)
    if raws.ndim != 3 or raws.shape[1:] != (28, 28):
        raise InputError(f"The real digits have shape {raws.shape}; the discriminator takes [N, 28, 28] images.",
                         "pass an MNIST Dataset such as explainkit.datasets.sample_data('mnist').")
    if raws.dtype != np.uint8:
        raws = np.clip(np.rint(raws * 255.0 if raws.max(initial=0) <= 1.0 else raws), 0, 255).astype(np.uint8)
    fake = generate(model, len(raws) if n_generated is None else n_generated, seed)
    labels = np.concatenate([np.ones(len(raws), np.int64), np.zeros(len(fake), np.int64)])
    return Dataset(np.concatenate([raws, fake]), labels, modality=Modality.IMAGE, class_names=list(CLASSES),
                   name=f"{real.name}+mnist-gan-generated-{len(fake)}")


def confident_fraction(model, classifier, n: int = N_FLOOR, seed: int = FLOOR_SEED,
                       threshold: float = CONFIDENCE) -> dict:
    """The held-out measure: the share of ``n`` generated digits that ``classifier`` (the floor's judge is
    the shipped mnist-cnn) assigns to one class with probability >= ``threshold``; also the class histogram."""
    images = generate(model, n, seed)
    probs = classifier.predict(list(images))
    confident = probs.max(axis=1) >= threshold
    counts = np.bincount(probs.argmax(axis=1)[confident], minlength=probs.shape[1])
    return {METRIC: float(confident.mean()) if n else 0.0, "n": int(n), "seed": int(seed), "threshold": threshold,
            "classifier": getattr(classifier, "name", "classifier"), "confident_per_class": counts.tolist()}


SAMPLE_N, SAMPLE_SEED = 100, 1        # sample_data("mnist-gan"): 100 held-out real digits + 100 generated


def write_sample_data(model, path, n: int = SAMPLE_N, seed: int = SAMPLE_SEED) -> None:
    """Write the generated half of ``sample_data("mnist-gan")`` (``n`` digits, ``seed``) with the weights'
    hash, atomically: the data layer ships them so that it never loads a model (scripts/train_samples.py)."""
    import io

    from explainkit.atomic import atomic_write

    buf = io.BytesIO()
    np.savez_compressed(buf, images=generate(model, n, seed), seed=np.int64(seed),
                        weights_hash=np.array(model.weights_hash()))
    atomic_write(path, buf.getvalue())


# -- training ---------------------------------------------------------------------------------------

def train_gan(module: MnistGAN, pixels, labels=None, *, epochs: int, batch_size: int, lr: float,
              beta1: float = 0.5, d_lr: float | None = None, label_smoothing: float = 0.9, seed: int = 0,
              progress: bool = True, desc: str = "mnist-gan", ema: float = 0.0, shift: int = 0,
              aux_weight: float = 1.0, on_epoch=None) -> dict:
    """Non-saturating DCGAN training on real pixels ``[N,1,28,28]`` in 0..1 (Adam, one D and one G step per
    batch, one-sided label smoothing; ``d_lr`` apart from ``lr`` is TTUR, Heusel et al. 2017).

    A class-conditional module (``n_classes`` > 0) is trained as an AC-GAN (Odena et al. 2017): the
    generator gets the digit class, and the discriminator's auxiliary classifier learns the real digits'
    ``labels`` while the generator is also rewarded (weight ``aux_weight``) when it classifies the
    generated digits as the class asked for. With ``ema`` > 0 the generator kept is the exponential
    moving average of its weights (decay ``ema``, as in ProGAN/StyleGAN). With ``shift`` > 0, real and
    generated digits alike are translated by up to ``shift`` pixels before the discriminator sees them
    (differentiable augmentation, Zhao et al. 2020). Then the generator's batch-norm statistics are
    re-estimated over fresh latents so that eval-mode generation matches training. Call inside
    ``deterministic(seed)``."""
    import copy

    from tqdm.auto import tqdm

    k_cls = module.n_classes
    if k_cls and labels is None:
        raise InputError("A class-conditional GAN needs the training digits' labels.", "pass labels=[N] ints.")
    gen = torch.Generator().manual_seed(seed)
    G, D = module.generator, module.discriminator
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(beta1, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=d_lr or lr, betas=(beta1, 0.999))
    bce, ce = nn.BCEWithLogitsLoss(), nn.CrossEntropyLoss()
    n = int(pixels.shape[0])
    steps = epochs * (n // batch_size)
    start = time.perf_counter()
    module.train()
    G_ema = copy.deepcopy(G) if ema > 0 else G
    d_loss = g_loss = float("nan")
    ones, zeros = torch.full((batch_size, 1), label_smoothing), torch.zeros(batch_size, 1)
    with tqdm(total=steps, desc=desc, disable=not progress, leave=False) as bar:
        for epoch in range(epochs):
            order = torch.randperm(n, generator=gen)
            dl = gl = 0.0
            for i in range(0, n - batch_size + 1, batch_size):        # full batches only (batch norm)
                idx = order[i:i + batch_size]
                real = module.normalize_pixels(_translate(pixels[idx], shift, gen))
                z = torch.randn(batch_size, module.latent_dim, generator=gen)
                y_fake = torch.randint(0, k_cls, (batch_size,), generator=gen) if k_cls else None
                fake = module.normalize_pixels(_translate(G(z, y_fake), shift, gen))
                if k_cls:
                    (d_real, c_real), d_fake = D.both(real), D(fake.detach())
                    loss_d = bce(d_real, ones) + bce(d_fake, zeros) + aux_weight * ce(c_real, labels[idx])
                else:
                    loss_d = bce(D(real), ones) + bce(D(fake.detach()), zeros)
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                if k_cls:
                    d_gen, c_gen = D.both(fake)
                    loss_g = bce(d_gen, torch.ones(batch_size, 1)) + aux_weight * ce(c_gen, y_fake)
                else:
                    loss_g = bce(D(fake), torch.ones(batch_size, 1))
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                if ema > 0:
                    with torch.no_grad():
                        for pe, p in zip(G_ema.parameters(), G.parameters()):
                            pe.lerp_(p, 1.0 - ema)
                dl += float(loss_d.detach())
                gl += float(loss_g.detach())
                bar.update(1)
            k = max(1, n // batch_size)
            d_loss, g_loss = dl / k, gl / k
            bar.set_postfix(d=f"{d_loss:.3f}", g=f"{g_loss:.3f}")
            if on_epoch is not None:                    # e.g. a progress measurement; must not use ``gen``
                on_epoch(epoch + 1, d_loss, g_loss, G_ema)
    if ema > 0:
        G.load_state_dict(G_ema.state_dict())
    _refresh_batch_norm(G, module.latent_dim, gen)
    module.eval()
    return {"d_loss": round(d_loss, 6), "g_loss": round(g_loss, 6), "epochs": epochs,
            "seconds": round(time.perf_counter() - start, 2)}


def _translate(pixels, shift: int, gen):
    """Each image moved by a random whole number of pixels in -shift..shift (zero = black fills in)."""
    if shift <= 0:
        return pixels
    n, _, h, w = pixels.shape
    padded = nn.functional.pad(pixels, (shift, shift, shift, shift))
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None].expand(n, 1, h, w + 2 * shift)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :].expand(n, 1, h, w)
    return out.gather(3, cols)


@torch.no_grad()
def _refresh_batch_norm(G: Generator, latent_dim: int, gen, batches: int = 40, batch_size: int = 250) -> None:
    """Exact (cumulative) batch-norm statistics of the final generator over fresh latents."""
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    G.train()
    for _ in range(batches):
        y = torch.randint(0, G.n_classes, (batch_size,), generator=gen) if G.n_classes else None
        G(torch.randn(batch_size, latent_dim, generator=gen), y)
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    G.eval()


def train_family(fam, train_data, held, hp: dict, tr: dict, *, judge, normalize: dict, seed: int = 0,
                 progress: bool = True, on_epoch=None):
    """``zoo.train`` for the mnist-gan family: adversarial training on the training digits, then the held-out
    floor (:func:`confident_fraction`, judged by ``judge``: the shipped mnist-cnn) and the discriminator's
    mean probability of "real" on the held-out real digits and on as many generated ones.
    Returns the TorchModel (module: both networks)."""
    from explainkit.models.torch_model import TorchModel
    from explainkit.models.training import deterministic

    cfg: dict = {"family": fam.name, "name": fam.name, "modality": fam.modality.value, "task": fam.task.value,
                 "description": fam.description, "classes": list(CLASSES), "input_shape": [1, 28, 28],
                 "normalize": normalize, "hparams": hp}
    start = time.perf_counter()
    with deterministic(seed):
        module = fam.build(cfg)
        pixels = torch.from_numpy(np.asarray(train_data.raws, np.float32) / 255.0).unsqueeze(1)
        labels = torch.from_numpy(np.asarray(train_data.labels, np.int64)) if module.n_classes else None
        log = train_gan(module, pixels, labels, epochs=int(tr["epochs"]), batch_size=int(tr["batch_size"]),
                        lr=float(tr["lr"]), beta1=float(tr.get("beta1", 0.5)), d_lr=tr.get("d_lr"),
                        label_smoothing=float(tr.get("label_smoothing", 1.0)), seed=seed, progress=progress,
                        desc=fam.name, ema=float(tr.get("ema", 0.0)), shift=int(tr.get("shift", 0)),
                        aux_weight=float(tr.get("aux_weight", 1.0)), on_epoch=on_epoch)
    seconds = round(time.perf_counter() - start, 1)
    model = TorchModel(module, modality=fam.modality, task=fam.task, classes=list(CLASSES), name=fam.name,
                       config=cfg, input_shape=(1, 28, 28), normalize=normalize)
    floor = confident_fraction(model, judge)
    p_real = model.predict(list(held.raws))[:, 1]
    p_fake = model.predict(list(generate(model, len(held), seed=1)))[:, 1]
    cfg["metrics"] = {METRIC: round(floor[METRIC], 4), "heldout": f"mnist-gan-generated-{N_FLOOR}",
                      "n_heldout": N_FLOOR, "judge": floor["classifier"], "threshold": CONFIDENCE,
                      "confident_per_class": floor["confident_per_class"],
                      "d_p_real_on_real": round(float(p_real.mean()), 4), "d_p_real_on_generated":
                      round(float(p_fake.mean()), 4), "real_heldout": held.name, "n_real_heldout": len(held)}
    cfg["training"] = {**tr, "seed": seed, "n_train": len(train_data), "d_loss": log["d_loss"],
                       "g_loss": log["g_loss"], "seconds": seconds}
    model.config = cfg
    if progress:
        print(f"{fam.name}: {floor[METRIC]:.4f} of {N_FLOOR} generated digits classified by {floor['classifier']} "
              f"with p >= {CONFIDENCE}, floor {fam.floor}, {seconds} s")
    return model
