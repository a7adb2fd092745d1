"""Where each dataset comes from, as data: for `python -m data.download`, every file its source ships, how it is
fetched, how big it is, what checksum the source publishes, and where its content goes under the dataset root.

    from data.sources import SOURCES, release
    chosen = release("melanoma")               # the default: the paper's two 512x512 re-packagings
    chosen = release("melanoma", "official")   # the 2020 competition's own files

Four kinds of source: a Kaggle competition, a Kaggle dataset, a public HTTPS file (LILA BC's archives, through
`--mirror` from any mirror holding the same file names) and torchvision's own downloader (its URL and MD5). Sizes
are bytes as documented on the sources' pages, rounded where the page rounds: the download command reads the real
size from the source (HTTP Content-Length, Kaggle's download response) and uses these only when the source does
not say. The unpacked sizes (approximate) give the ratio that scales a real archive size to the space its content
needs.
"""
from __future__ import annotations

from dataclasses import dataclass

from data import REGISTRY

KAGGLE_COMPETITION, KAGGLE_DATASET, HTTPS, TORCHVISION = "Kaggle competition", "Kaggle dataset", "HTTPS", "torchvision"
KAGGLE_KINDS = (KAGGLE_COMPETITION, KAGGLE_DATASET)
GB = 10**9
MB = 10**6
LILA_CCT = "https://storage.googleapis.com/public-datasets-lila/caltechcameratraps"


@dataclass(frozen=True)
class Archive:
    """One archive as its source ships it, and where its content goes under the dataset root.

    `file` is the local name the archive gets in the downloads folder (a multi-part archive's name without the
    `.001` suffix of its `parts` pieces). `kind` and `ref` say where it comes from: a Kaggle competition slug or
    owner/dataset slug, an HTTPS URL, or a torchvision.datasets class. For a Kaggle competition, `member` names
    the one competition file to fetch (None: the whole competition bundle). `skip` lists member prefixes not
    unpacked (copies in another format that nothing here reads); `expect` the top-level entries the content must
    have once unpacked into `into`.
    """
    file: str
    kind: str
    ref: str
    size: int                       # documented download size, bytes
    unpacked: int                   # documented size of what is unpacked, bytes
    into: str = ""                  # folder under the dataset root ("" = the root itself)
    member: str | None = None       # Kaggle competition: one file of the competition instead of the bundle
    parts: int = 1                  # a multi-part archive: file.001 ... file.00N, one zip when joined
    md5: str | None = None          # the checksum the source publishes, where it publishes one
    skip: tuple[str, ...] = ()
    expect: tuple[str, ...] = ()

    @property
    def part_files(self) -> tuple[str, ...]:
        """The local file names: the archive itself, or its numbered parts."""
        if self.parts == 1:
            return (self.file,)
        return tuple(f"{self.file}.{index:03d}" for index in range(1, self.parts + 1))

    @property
    def ratio(self) -> float:
        """Unpacked bytes per downloaded byte, to scale a real archive size to the space its content needs."""
        return self.unpacked / self.size

    def url(self, mirror: str | None = None) -> str:
        """Where an HTTPS archive is fetched: its source URL, or the same file name under `mirror`."""
        return f"{mirror.rstrip('/')}/{self.file}" if mirror else self.ref


@dataclass(frozen=True)
class Release:
    """One way to get a dataset: its archives, the page a user opens, and a line for --help."""
    dataset: str
    name: str
    title: str
    page: str
    archives: tuple[Archive, ...]
    note: str = ""

    @property
    def kind(self) -> str:
        return self.archives[0].kind

    @property
    def size(self) -> int:
        return sum(archive.size for archive in self.archives)

    @property
    def unpacked(self) -> int:
        return sum(archive.unpacked for archive in self.archives)


def kaggle_page(kind: str, ref: str, tab: str = "rules") -> str:
    """A Kaggle competition's rules page (where the rules are accepted; tab="data": its files), or a Kaggle
    dataset's page."""
    if kind == KAGGLE_COMPETITION:
        return f"https://www.kaggle.com/competitions/{ref}/{tab}"
    return f"https://www.kaggle.com/datasets/{ref}"


def competition(dataset: str, slug: str, size: int, unpacked: int, expect: tuple[str, ...],
                skip: tuple[str, ...] = (), note: str = "", name: str = "competition") -> Release:
    """A dataset that is one Kaggle competition's whole bundle, `<slug>.zip`, unpacked into the root."""
    archive = Archive(f"{slug}.zip", KAGGLE_COMPETITION, slug, size, unpacked, skip=skip, expect=expect)
    return Release(dataset, name, f"Kaggle competition {slug}", kaggle_page(KAGGLE_COMPETITION, slug),
                   (archive,), note)


MELANOMA_2020, MELANOMA_2019 = "cdeotte/jpeg-melanoma-512x512", "cdeotte/jpeg-isic2019-512x512"
DR2015 = "diabetic-retinopathy-detection"

# Each dataset's releases, the default first.
SOURCES: dict[str, dict[str, Release]] = {
    "cct20": {"lila": Release(
        "cct20", "lila", "LILA BC, Caltech Camera Traps, ECCV'18 subset (public HTTPS)",
        "https://lila.science/datasets/caltech-camera-traps",
        (Archive("eccv_18_annotations.tar.gz", HTTPS, f"{LILA_CCT}/eccv_18_annotations.tar.gz", 2_997_071, 25 * MB,
                 expect=("eccv_18_annotation_files",)),
         Archive("eccv_18_all_images_sm.tar.gz", HTTPS, f"{LILA_CCT}/eccv_18_all_images_sm.tar.gz",
                 6_492_615_601, int(6.6 * GB), expect=("eccv_18_all_images_sm",))),
        note="Google Cloud's copy (LILA's page lists AWS and Azure mirrors too: --mirror)")},
    "aptos": {"competition": competition("aptos", "aptos2019-blindness-detection", int(9.5 * GB), int(9.6 * GB),
                                         ("train.csv", "train_images"))},
    "dr2015": {"competition": Release(
        "dr2015", "competition", f"Kaggle competition {DR2015}: the training parts only",
        kaggle_page(KAGGLE_COMPETITION, DR2015),
        (Archive("trainLabels.csv.zip", KAGGLE_COMPETITION, DR2015, 200_000, 500_000, member="trainLabels.csv.zip",
                 expect=("trainLabels.csv",)),
         Archive("train.zip", KAGGLE_COMPETITION, DR2015, 35 * GB, int(35.2 * GB), member="train.zip", parts=5,
                 expect=("train",))),
        note="train.zip.001-005 are one zip archive in five parts; the test parts (53 GB) are not fetched")},
    "hpa": {"competition": competition("hpa", "human-protein-atlas-image-classification", int(17.5 * GB), 18 * GB,
                                       ("train.csv", "train"))},
    "melanoma": {
        "repackaged": Release(
            "melanoma", "repackaged", f"Kaggle datasets {MELANOMA_2020} + {MELANOMA_2019.split('/')[1]} (the paper's)",
            kaggle_page(KAGGLE_DATASET, MELANOMA_2020),
            (Archive("jpeg-melanoma-512x512.zip", KAGGLE_DATASET, MELANOMA_2020, int(3.4 * GB), int(3.5 * GB),
                     into="melanoma-2020", expect=("train.csv", "train")),
             Archive("jpeg-isic2019-512x512.zip", KAGGLE_DATASET, MELANOMA_2019, 2 * GB, int(2.1 * GB),
                     into="melanoma-2019", expect=("train.csv", "train"))),
            note="ISIC 2020 and 2019 resized to 512x512 with patient-isolated tfrecord folds"),
        "official": competition(
            "melanoma", "siim-isic-melanoma-classification", 108 * GB, 32 * GB, ("train.csv", "jpeg"),
            skip=("train/", "test/", "tfrecords/"),
            note="the 2020 competition's own files (the DICOM and TFRecord copies are not unpacked); the paper's "
                 "split (splits.py --method paper) needs the re-packagings' tfrecord folds", name="official")},
    "cassava": {"competition": competition(
        "cassava", "cassava-leaf-disease-classification", int(6.2 * GB), int(2.6 * GB),
        ("train.csv", "label_num_to_disease_map.json", "train_images"), skip=("train_tfrecords/", "test_tfrecords/"),
        note="the TFRecord copies of the images are not unpacked")},
    "eurosat": {"torchvision": Release(
        "eurosat", "torchvision", "torchvision.datasets.EuroSAT (its URL and MD5)",
        "https://github.com/phelber/eurosat",
        (Archive("EuroSAT.zip", TORCHVISION, "EuroSAT", 94 * MB, 100 * MB, expect=("2750",)),))},
    "cifar10": {"torchvision": Release(
        "cifar10", "torchvision", "torchvision.datasets.CIFAR10 (its URL and MD5s)",
        "https://www.cs.toronto.edu/~kriz/cifar.html",
        (Archive("cifar-10-python.tar.gz", TORCHVISION, "CIFAR10", 170_498_071, 186 * MB,
                 md5="c58f30108f718f92721af3b95e74349a", expect=("cifar-10-batches-py",)),))},
}

NO_DOWNLOAD = {"digits": "bundled with scikit-learn (sklearn.datasets.load_digits): nothing to download"}


def release(dataset: str, name: str | None = None) -> Release:
    """The release `name` of `dataset` (default: the first listed, the paper's)."""
    releases = SOURCES[dataset]
    return releases[name] if name is not None else next(iter(releases.values()))


def size_text(size: float) -> str:
    """Bytes as GB (MB below one GB, kB below one MB), as the sources' pages write them."""
    if size >= GB:
        return f"{size / GB:.1f} GB"
    return f"{size / MB:.0f} MB" if size >= MB else f"{size / 1000:.0f} kB"


def help_table() -> str:
    """Every dataset with its source and sizes, for --help."""
    lines = ["datasets (source; download + space unpacked, approximate):"]
    for dataset in REGISTRY:
        if dataset in NO_DOWNLOAD:
            lines.append(f"  {dataset:<9} {NO_DOWNLOAD[dataset]}")
            continue
        for index, chosen in enumerate(SOURCES[dataset].values()):
            label = dataset if index == 0 else f"  --release {chosen.name}"
            lines.append(f"  {label:<9} {chosen.title}; {size_text(chosen.size)} + {size_text(chosen.unpacked)}")
    return "\n".join(lines)

