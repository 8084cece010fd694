"""The built-in ``digits`` dataset, shipped with specc (no scikit-learn, no download).

In: nothing (the file ``data_files/digits.npz`` beside this module).
Out: images [1797, 8, 8] as float64 in [0, 1] and labels [1797] as int64, the same
numbers that scikit-learn's ``load_digits()`` gives (``images / 16``, ``target``).

The file holds the pixel counts 0..16 and the labels as uint8 (a compressed .npz
of 45 KB) and was made once from scikit-learn's copy with :func:`write_from_sklearn`.
The data are the test set of the UCI "Optical Recognition of Handwritten Digits"
(E. Alpaydin, C. Kaynak, 1998) as distributed by scikit-learn under the BSD
3-Clause license; the notice is ``data_files/DIGITS-LICENSE.txt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

FILE = Path(__file__).with_name("data_files") / "digits.npz"
N, CLASSES = 1797, 10


def digits() -> tuple[np.ndarray, np.ndarray]:
    """(images [1797, 8, 8] in [0, 1], labels [1797]) from the shipped file, checked."""
    if not FILE.is_file():  # a broken install
        raise InputError(f"the 'digits' dataset file is missing from the installed package ({FILE})",
                         hint="reinstall specc")
    with np.load(FILE, allow_pickle=False) as f:
        pixels, labels = f["pixels"], f["labels"]
    if pixels.shape != (N, 8, 8) or labels.shape != (N,) or pixels.max() > 16 or labels.max() >= CLASSES:
        raise InputError(f"the 'digits' dataset file {FILE} is damaged", hint="reinstall specc")
    return pixels.astype(np.float64) / 16.0, labels.astype(np.int64)


def write_from_sklearn(path: str | Path = FILE) -> Path:
    """Write the shipped file from scikit-learn's ``load_digits`` (how ``digits.npz`` was made)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    pixels = d.images.astype(np.uint8)
    assert np.array_equal(pixels, d.images), "digits pixels are whole counts 0..16"
    np.savez_compressed(path, pixels=pixels, labels=d.target.astype(np.uint8))
    return Path(path)
