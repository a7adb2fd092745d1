"""The dataset registry: every dataset the toolkit knows, read from its native download.

    from data import open_dataset
    samples = open_dataset("aptos", root="datasets/aptos")   # checks the whole layout up front
    image = samples.read_image(0)                             # H x W x C uint8, RGB (RGBY for HPA with channels="rgby")

`REGISTRY` maps a name to its `DatasetSpec` (task, classes, metric, splits, the paper's flips). `open_dataset`
returns `Samples`: ids, labels and where each image lives, for all labelled images of the dataset. Which sample is
in which split is the job of splits.py (or of the official files, for CCT-20 and CIFAR-10). `concatenate` appends
a second dataset with the same labels (APTOS 2019 + the 2015 DR competition) for training on more data.

Problem lists in errors show the first 10 problems; set TRANSFER_ALL_PROBLEMS=1 to list every one.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common import errors
from data.images import BadImageError, read_image_files

MAX_PROBLEMS_SHOWN = 10
ALL_PROBLEMS_VARIABLE = "TRANSFER_ALL_PROBLEMS"  # set to 1 to list every problem instead of the first 10


def problem_list(problems: list[str]) -> str:
    """The problems as indented lines: the first MAX_PROBLEMS_SHOWN, and how to see the rest when there are more."""
    shown = problems if os.environ.get(ALL_PROBLEMS_VARIABLE) else problems[:MAX_PROBLEMS_SHOWN]
    lines = [f"  - {p}" for p in shown]
    if len(problems) > len(shown):
        lines.append(f"  ... and {len(problems) - len(shown)} more (set {ALL_PROBLEMS_VARIABLE}=1 to list them all)")
    return "\n".join(lines)


class DatasetError(errors.DataError, ValueError):
    """A dataset's files are not what its source ships. The message names the dataset, the files and the problems."""

    def __init__(self, dataset: str, root: Path | str, problems: list[str]):
        self.dataset, self.root, self.problems = dataset, Path(root), list(problems)
        super().__init__(f"dataset '{dataset}' at {self.root}: {len(self.problems)} problem(s) found:\n"
                         f"{problem_list(self.problems)}")


class IncompatibleDatasetsError(errors.UsageError, ValueError):
    """Two datasets whose samples cannot be trained on together (labels that mean different things)."""


@dataclass(frozen=True)
class Published:
    """The data the paper's split was made from, as published: how many labelled images the complete download holds
    (as this toolkit's loader counts them), how many of each class where that is known, and, for a dataset whose
    split depends on which files a copy holds, each of those files with the images or rows it lists (the loader
    counts the same in Samples.options["files"]). A copy that differs is split by the paper's rule, but is not the
    paper's split (data/split_methods.py: coverage)."""
    images: int                             # the files' total where there are `files`
    classes: tuple[int, ...] = ()           # images per class, in label order (empty: not checked per class)
    files: tuple[tuple[str, int], ...] = ()  # (file relative to the root, images or rows it lists)
    counted: str = "images"                 # what `images` and `files` count, for messages
    source: str = ""                        # where the numbers come from
    split_sizes: tuple[tuple[str, int], ...] = ()  # the paper's split: images per split, training split first

    def __post_init__(self) -> None:
        assert not self.files or self.images == sum(count for _, count in self.files), self
        assert not self.classes or self.images == sum(self.classes), self


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    task: str                      # "multiclass" | "ordinal" | "binary" | "multilabel"
    num_classes: int
    class_names: tuple[str, ...] | None  # None: read from the dataset's own files (CCT-20)
    metric: str                    # the metric that selects and reports models (see metrics.PRIMARY_METRIC)
    splits: tuple[str, ...]        # every split name the dataset can have, training split first
    selection_split: str           # where the best epoch / configuration is chosen
    report_split: str | None       # where the chosen model is reported, when it differs from selection_split
    hflip: bool                    # the paper's train-time flips
    vflip: bool
    # "paper" (splits.py reproduces it), "import" (HPA's file), "official" (in the files), "none"
    paper_split: str
    source: str                    # where users get it
    epochs: int = 30               # the paper's recipe: 30 epochs (Melanoma 10)
    step_milestones: tuple[int, ...] = (15, 20, 25)  # epochs at which the step schedule multiplies lr by 0.1
    img_size: int | None = None    # the dataset's own default input size, if it overrides the model's
    extra_splits: tuple[str, ...] = ()  # also evaluated every epoch and shown beside the reported split
    published: Published | None = None  # the data the paper's split covers (None: the paper did not use it)

    @property
    def official_splits(self) -> bool:
        return self.paper_split == "official"


APTOS_GRADES = ("No DR", "Mild", "Moderate", "Severe", "Proliferative DR")
HPA_LOCATIONS = (
    "Nucleoplasm", "Nuclear membrane", "Nucleoli", "Nucleoli fibrillar center", "Nuclear speckles", "Nuclear bodies",
    "Endoplasmic reticulum", "Golgi apparatus", "Peroxisomes", "Endosomes", "Lysosomes", "Intermediate filaments",
    "Actin filaments", "Focal adhesion sites", "Microtubules", "Microtubule ends", "Cytokinetic bridge",
    "Mitotic spindle", "Microtubule organizing center", "Centrosome", "Lipid droplets", "Plasma membrane",
    "Cell junctions", "Mitochondria", "Aggresome", "Cytosol", "Cytoplasmic bodies", "Rods & rings")
CASSAVA_DISEASES = ("Cassava Bacterial Blight (CBB)", "Cassava Brown Streak Disease (CBSD)",
                    "Cassava Green Mottle (CGM)", "Cassava Mosaic Disease (CMD)", "Healthy")
EUROSAT_CLASSES = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                   "PermanentCrop", "Residential", "River", "SeaLake")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# CCT-20's split is its five annotation files: the images each lists (the empty ones included, which the loader
# leaves out), as Beery et al., "Recognition in Terra Incognita" (ECCV 2018) give them: 57,864 in all.
CCT20_PUBLISHED = Published(57864, files=tuple(
    (f"eccv_18_annotation_files/{name}_annotations.json", count) for name, count in (
        ("train", 13553), ("cis_val", 3484), ("cis_test", 15827), ("trans_val", 1725), ("trans_test", 23275))),
    source="Beery et al., ECCV 2018: the ECCV'18 annotation files",
    split_sizes=(("train", 13553), ("cis_val", 3484), ("cis_test", 15827)))
# Melanoma's split draws from the tfrecord folds of the two 512x512 re-packagings, ISIC 2020's 33,126 training
# images and ISIC 2019's 25,331: the rows of their train.csv, duplicates (tfrecord -1, left out) included.
MELANOMA_PUBLISHED = Published(58457, files=(("melanoma-2020/train.csv", 33126), ("melanoma-2019/train.csv", 25331)),
                               counted="rows", source="ISIC 2020 and 2019 training sets, re-packaged at 512x512",
                               split_sizes=(("train", 46371), ("val", 11593)))  # the 493 duplicates left out

REGISTRY: dict[str, DatasetSpec] = {spec.name: spec for spec in [
    DatasetSpec("cct20", "multiclass", 15, None, "accuracy",
                ("train", "cis_val", "cis_test", "trans_val", "trans_test"), "cis_val", "cis_test",
                hflip=True, vflip=False, paper_split="official", published=CCT20_PUBLISHED,
                source="LILA BC, Caltech Camera Traps, ECCV'18 subset (eccv_18_annotations + eccv_18_all_images_sm)"),
    DatasetSpec("aptos", "ordinal", 5, APTOS_GRADES, "qwk", ("train", "val"), "val", None,
                hflip=True, vflip=False, paper_split="paper", published=Published(
                    3662, (1805, 370, 999, 193, 295), source="the competition's train.csv",
                    split_sizes=(("train", 2931), ("val", 731))),
                source="Kaggle competition aptos2019-blindness-detection"),
    # the 2015 competition grades retinas on the same 0-4 scale as APTOS 2019; the top APTOS solutions trained on
    # both (App. F). Not one of the paper's six datasets, so it has no paper split.
    DatasetSpec("dr2015", "ordinal", 5, APTOS_GRADES, "qwk", ("train", "val"), "val", None,
                hflip=True, vflip=False, paper_split="none",
                source="Kaggle competition diabetic-retinopathy-detection (2015): trainLabels.csv and the unpacked "
                       "train.zip.00* parts"),
    # The paper reports HPA on val, where the thresholds are chosen: "the thresholds selected for the larger validation
    # split generalize well to the smaller test-validation split" (section 4.3); test_val is shown beside it.
    DatasetSpec("hpa", "multilabel", 28, HPA_LOCATIONS, "macro_f1", ("train", "val", "test_val"), "val", None,
                hflip=True, vflip=True, paper_split="import", extra_splits=("test_val",),
                published=Published(31072, source="the competition's train.csv, which the published split file covers",
                                    split_sizes=(("train", 22582), ("val", 5664), ("test_val", 2826))),
                source="Kaggle competition human-protein-atlas-image-classification"),
    DatasetSpec("melanoma", "binary", 2, ("benign", "malignant"), "roc_auc", ("train", "val"), "val", None,
                hflip=True, vflip=True, paper_split="paper", epochs=10, step_milestones=(5,),
                published=MELANOMA_PUBLISHED,
                source="Kaggle competition siim-isic-melanoma-classification (2020) and the 512x512 re-packagings "
                       "of ISIC 2020 and 2019 on Kaggle datasets"),
    DatasetSpec("cassava", "multiclass", 5, CASSAVA_DISEASES, "accuracy", ("train", "val"), "val", None,
                hflip=True, vflip=True, paper_split="paper", published=Published(
                    21397, (1087, 2189, 2386, 13158, 2577), source="the competition's train.csv",
                    split_sizes=(("train", 17120), ("val", 4277))),
                source="Kaggle competition cassava-leaf-disease-classification"),
    DatasetSpec("eurosat", "multiclass", 10, EUROSAT_CLASSES, "accuracy", ("train", "val"), "val", None,
                hflip=False, vflip=False, paper_split="paper", img_size=224, published=Published(
                    27000, (3000, 3000, 3000, 2500, 2500, 2000, 2500, 3000, 2500, 3000),
                    source="EuroSAT RGB (Helber et al.): 2,000 to 3,000 images per class",
                    split_sizes=(("train", 21600), ("val", 5400))),
                source="EuroSAT RGB (Helber et al.), also torchvision.datasets.EuroSAT"),
    DatasetSpec("cifar10", "multiclass", 10, CIFAR10_CLASSES, "accuracy", ("train", "val"), "val", None,
                hflip=True, vflip=False, paper_split="official", published=Published(
                    60000, (6000,) * 10, source="50,000 training and 10,000 test images, 6,000 per class",
                    split_sizes=(("train", 50000), ("val", 10000))),
                source="torchvision.datasets.CIFAR10 (the official test batch is the val split)"),
    DatasetSpec("digits", "multiclass", 10, tuple(str(d) for d in range(10)), "accuracy", ("train", "val"), "val",
                None, hflip=False, vflip=False, paper_split="none", img_size=32,
                source="scikit-learn's bundled load_digits (no download): the offline demo and test dataset"),
]}


# The paper's real-world datasets (CIFAR-10 and digits are web-scraped controls): Appendix N, the benchmark score.
REAL_WORLD = ("cct20", "aptos", "hpa", "melanoma", "cassava", "eurosat")


@dataclass
class Samples:
    """All labelled images of one dataset: ids, labels, and where each image comes from.

    Images live either in files (`image_files[i]` is a tuple of paths: one RGB file, or HPA's per-channel
    grayscale PNGs, stacked in that order) or in memory (`images`, N x H x W x C uint8, for CIFAR-10 and digits).
    `labels` is (N,) int64, or (N, num_classes) uint8 multi-hot for multilabel datasets.
    `official_split[i]` names the sample's split where the source defines splits (CCT-20, CIFAR-10), else None.
    `columns` holds per-sample metadata the splits need (Melanoma: year, tfrecord fold, patient_id).
    """
    spec: DatasetSpec
    root: Path
    ids: list[str]
    labels: np.ndarray
    class_names: tuple[str, ...]
    image_files: list[tuple[Path, ...]] | None = None
    images: np.ndarray | None = None
    official_split: np.ndarray | None = None
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # how the dataset was opened (e.g. HPA channels)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def num_channels(self) -> int:
        return 4 if self.options.get("channels") == "rgby" else 3

    def read_image(self, index: int) -> np.ndarray:
        """H x W x C uint8 image of sample `index` (RGB; RGBY for HPA opened with channels="rgby").

        Raises BadImageError naming the file when it is missing or cannot be decoded.
        """
        if self.images is not None:
            return self.images[index]
        return read_image_files(self.image_files[index], self.num_channels)

    def class_counts(self) -> np.ndarray:
        if self.labels.ndim == 2:
            return self.labels.sum(axis=0).astype(np.int64)
        return np.bincount(self.labels, minlength=len(self.class_names))


def describe(samples: Samples) -> str:
    """"name: N samples", with what the loader left out and why (e.g. Melanoma's duplicate images)."""
    excluded = {reason: count for reason, count in samples.options.get("excluded", {}).items() if count}
    parts = samples.options.get("concatenated")
    text = f"{samples.name}: {len(samples):,} samples"
    if parts:
        text = (f"{' + '.join(p['dataset'] for p in parts)}: {len(samples):,} samples ("
                + " + ".join(f"{p['samples']:,} {p['dataset']}" for p in parts) + ")")
    if excluded:
        text += "; left out: " + ", ".join(f"{count:,} {reason}" for reason, count in excluded.items())
    return text


def concatenate(primary: Samples, extra: Samples) -> Samples:
    """`primary`'s samples followed by `extra`'s, as one dataset with primary's spec, for training on more data.

    The labels must mean the same: the same task and the same class names in the same order (APTOS 2019 and the
    2015 DR competition both grade 0-4 on the International Clinical DR scale). Primary's ids are kept; extra's
    become "<extra name>/<id>", and columns["dataset"] names every sample's dataset, so ids stay unique and
    traceable. Per-sample columns of only one dataset are kept, with "" for the other's samples. Samples of extra
    are indices len(primary) .. len(primary) + len(extra) - 1 of the result (see splits.with_extra_training).
    """
    what = f"{extra.name} cannot be added to {primary.name}"
    if (primary.spec.task, primary.class_names) != (extra.spec.task, extra.class_names):
        raise IncompatibleDatasetsError(
            f"{what}: their labels mean different things ({primary.name}: {primary.spec.task}, classes "
            f"{', '.join(primary.class_names)}; {extra.name}: {extra.spec.task}, classes "
            f"{', '.join(extra.class_names)})")
    if primary.image_files is None or extra.image_files is None:
        raise IncompatibleDatasetsError(f"{what}: only datasets read from image files can be combined")
    if primary.official_split is not None or extra.official_split is not None:
        raise IncompatibleDatasetsError(f"{what}: a dataset with official splits (CCT-20, CIFAR-10) cannot be combined")
    if primary.num_channels != extra.num_channels:
        raise IncompatibleDatasetsError(f"{what}: {primary.num_channels} vs {extra.num_channels} image channels")
    ids = list(primary.ids) + [f"{extra.name}/{sample_id}" for sample_id in extra.ids]
    if len(set(ids)) != len(ids):
        raise IncompatibleDatasetsError(f"{what}: the combined ids are not unique")
    columns = {"dataset": np.array([primary.name] * len(primary) + [extra.name] * len(extra))}
    for name in dict.fromkeys([*primary.columns, *extra.columns]):
        if name in primary.columns and name in extra.columns:
            columns[name] = np.concatenate([np.asarray(primary.columns[name]), np.asarray(extra.columns[name])])
        else:
            columns[name] = np.concatenate([np.asarray(part.columns[name]).astype(str) if name in part.columns
                                            else np.full(len(part), "") for part in (primary, extra)])
    excluded = {f"{part.name}: {reason}": count for part in (primary, extra)
                for reason, count in part.options.get("excluded", {}).items()}
    options = {**primary.options, "excluded": excluded, "concatenated": [
        {"dataset": part.name, "root": str(part.root), "samples": len(part)} for part in (primary, extra)]}
    return Samples(spec=primary.spec, root=primary.root, ids=ids, labels=np.concatenate([primary.labels, extra.labels]),
                   class_names=primary.class_names, image_files=list(primary.image_files) + list(extra.image_files),
                   columns=columns, options=options)


def default_root(name: str) -> Path:
    return Path("datasets") / name


class UnknownDatasetError(errors.UsageError, ValueError):
    """A dataset name the registry does not have."""


def get_spec(name: str) -> DatasetSpec:
    if name not in REGISTRY:
        raise UnknownDatasetError(f"unknown dataset '{name}'; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def open_dataset(name: str, root: str | Path | None = None, **options: Any) -> Samples:
    """Read dataset `name` from `root` (default datasets/<name>), checking the whole layout first.

    Options are dataset-specific: HPA takes channels="rgb"|"rgby" and composite_dir=PATH (pre-composited
    <Id>.png images). Raises DatasetError listing the first problems found.
    """
    spec = get_spec(name)
    root = Path(root) if root is not None else default_root(name)
    module = importlib.import_module(f"data.{name}")
    return module.load(spec, root, **options)


__all__ = ["REGISTRY", "REAL_WORLD", "DatasetSpec", "Published", "Samples", "DatasetError", "IncompatibleDatasetsError",
           "BadImageError",
           "open_dataset", "get_spec", "default_root", "describe", "concatenate", "problem_list"]
