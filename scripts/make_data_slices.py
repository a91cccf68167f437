"""Write the small held-out slices shipped in explainkit/data/ from the shared data folder.

    python scripts/make_data_slices.py [DATA_DIR]     (default: ../shared/data next to the repo)

- mnist_heldout_1000.npz: images 8000-8999 of the MNIST t10k set (uint8 [1000,28,28]) and labels.
- sst2_dev.tsv: the 872 SST-2 dev sentences (copied as is).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from explainkit.data.datasets import DATA_DIR, load_mnist, load_sst2  # noqa: E402


def main(data_dir: Path) -> None:
    DATA_DIR.mkdir(exist_ok=True)
    held = load_mnist(data_dir / "mnist", split="heldout")
    np.savez_compressed(DATA_DIR / "mnist_heldout_1000.npz", images=held.raws[:1000],
                        labels=held.labels[:1000].astype(np.uint8))
    load_sst2(data_dir / "sst2", split="dev")               # validates the file before copying
    shutil.copyfile(data_dir / "sst2" / "dev.tsv", DATA_DIR / "sst2_dev.tsv")
    for p in sorted(DATA_DIR.iterdir()):
        print(f"{p.name}: {p.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data")
