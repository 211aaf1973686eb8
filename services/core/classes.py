"""The five diagnostic classes of the reference study (SkinGenBench, arXiv 2512.17585)."""

CLASSES: tuple[str, ...] = ("NV", "BCC", "BKL", "MEL", "SCC")
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

# Class shares of the reference study's 14,116 images (NV 7,424; BCC 3,026; BKL 1,637; MEL 1,563;
# SCC 466). The phantom data set uses them as its default proportions.
REFERENCE_PROPORTIONS: dict[str, float] = {
    "NV": 7424 / 14116,
    "BCC": 3026 / 14116,
    "BKL": 1637 / 14116,
    "MEL": 1563 / 14116,
    "SCC": 466 / 14116,
}

SPLITS: tuple[str, ...] = ("train", "val", "test")
