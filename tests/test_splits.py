"""Split files: the paper's splits are reproduced exactly, split files are deterministic, and bad files are refused.

The paper's validation sets are recomputed here independently, straight from each fixture's train.csv or folder
listing with NumPy's global legacy RNG, as the released code does, and compared with what splits.py writes.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.fileio import sha256_file
from data import Published, Samples, concatenate, get_spec, open_dataset
from data.splits import (
    PaperSplitFileNeeded,
    SplitFileError,
    SplitFileExistsError,
    default_method,
    make_split,
    read_split_file,
    render_split_file,
    resolve,
    resolve_split,
    split_dataset,
    split_indices,
    train_on_all,
    with_extra_training,
    write_split_file,
)
from data.synthetic import write_fixture

from conftest import only_record, read_csv, train, write_csv

REPO = Path(__file__).resolve().parents[1]


def run_splits(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "splits.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


def split_of(path: Path) -> dict[str, str]:
    """id -> split name, from a written split file (checking its header)."""
    header, rows = read_csv(path)
    assert header == ["id", "label", "split"]
    return {row[0]: row[2] for row in rows}


def ids_in(assignment: dict[str, str], split: str) -> set[str]:
    return {sample_id for sample_id, name in assignment.items() if name == split}


def released_class_holdout(labels: list[int], num_classes: int, seed: int) -> set[int]:
    """The released code's rule: one global seed, then per class int(0.2 * n) of its rows in row order."""
    np.random.seed(seed)
    validation = []
    for label in range(num_classes):
        rows = [i for i, value in enumerate(labels) if value == label]
        validation.extend(np.random.choice(rows, int(0.2 * len(rows)), replace=False).tolist())
    return set(validation)


def uneven_csv(path: Path, label_column: int) -> None:
    """Shuffle the CSV's rows and drop some of classes 1.. so the classes differ in size (class k loses k rows)."""
    header, rows = read_csv(path)
    rows = [rows[i] for i in np.random.default_rng(5).permutation(len(rows))]
    dropped = {label: 0 for label in range(5)}
    kept = []
    for row in rows:
        label = int(row[label_column])
        if dropped[label] < label:
            dropped[label] += 1
            continue
        kept.append(row)
    write_csv(path, header, kept)


def fake_samples(name: str, labels: np.ndarray, **columns) -> Samples:
    spec = get_spec(name)
    return Samples(spec=spec, root=Path("."), ids=[f"s{i:04d}" for i in range(len(labels))], labels=labels,
                   class_names=spec.class_names, columns={k: np.asarray(v) for k, v in columns.items()})


# ---------------------------------------------------------------- the paper's splits, recomputed independently

def test_aptos_paper_split_from_the_command_line(tmp_path):
    root = write_fixture("aptos", tmp_path / "aptos", per_class=9)
    uneven_csv(root / "train.csv", label_column=1)
    _, rows = read_csv(root / "train.csv")
    expected = {rows[i][0] for i in released_class_holdout([int(r[1]) for r in rows], 5, seed=414)}

    result = run_splits("aptos", "--root", str(root), "--method", "paper", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # the paper's rule, on a copy that is not the published data: never called the paper's split
    assert ("split: method 'paper', seed 414 (the paper's method on 35 of 3,662 images, NOT the paper's split)"
            in result.stdout)
    written = tmp_path / "splits" / "aptos-paper-seed414.csv"
    assignment = split_of(written)
    assert ids_in(assignment, "val") == expected
    assert ids_in(assignment, "train") == {r[0] for r in rows} - expected
    assert [line.split(",")[0] for line in written.read_text().splitlines()[1:]] == [r[0] for r in rows]
    # the printed table: class 4 has 9 - 4 = 5 rows, int(0.2 * 5) = 1 of them validates
    assert sha256_file(written) in result.stdout
    assert any(line.split()[-2:] == ["4", "1"] for line in result.stdout.splitlines() if "Proliferative" in line)


def test_cassava_paper_split(tmp_path):
    root = write_fixture("cassava", tmp_path / "cassava", per_class=8)
    uneven_csv(root / "train.csv", label_column=1)
    _, rows = read_csv(root / "train.csv")
    expected = {rows[i][0] for i in released_class_holdout([int(r[1]) for r in rows], 5, seed=414)}

    summary = split_dataset("cassava", root, "paper", None, None, tmp_path / "cassava.csv")
    assert ids_in(split_of(tmp_path / "cassava.csv"), "val") == expected
    assert "seed 414" in summary


def test_eurosat_paper_split_uses_imagefolder_order(tmp_path):
    root = write_fixture("eurosat", tmp_path / "eurosat", per_class=11)  # _10, _11 sort before _2
    classes = sorted(os.listdir(root / "2750"))
    for label, class_name in enumerate(classes):  # uneven classes: class k loses k files
        for n in range(1, label + 1):
            (root / "2750" / class_name / f"{class_name}_{n}.jpg").unlink()
    listing = [(f"{c}/{f}", label) for label, c in enumerate(classes) for f in sorted(os.listdir(root / "2750" / c))]
    held_out = released_class_holdout([label for _, label in listing], 10, seed=42)
    expected = {listing[i][0] for i in held_out}

    split_dataset("eurosat", root, None, None, None, tmp_path / "eurosat.csv")  # paper is eurosat's default
    assignment = split_of(tmp_path / "eurosat.csv")
    assert list(assignment) == [path for path, _ in listing]
    assert ids_in(assignment, "val") == expected


def test_melanoma_paper_split_draws_folds_per_year_from_one_seed(tmp_path):
    root = write_fixture("melanoma", tmp_path / "melanoma", per_class=3)
    # more folds than the fixture's five, numbered unevenly, so that the draw sequence really matters
    for year, folds, offset in (("2020", 7, 0), ("2019", 9, 3)):
        header, rows = read_csv(root / f"melanoma-{year}" / "train.csv")
        column = header.index("tfrecord")
        for i, row in enumerate(rows):
            if row[column] != "-1":
                row[column] = str(i % folds + offset)
        write_csv(root / f"melanoma-{year}" / "train.csv", header, rows)

    np.random.seed(23)  # the released code: one seed, then 2020 and 2019 in turn, folds listed from a set
    expected_val, kept = set(), set()
    for year in ("2020", "2019"):
        header, rows = read_csv(root / f"melanoma-{year}" / "train.csv")
        fold_of = {row[0]: int(row[header.index("tfrecord")]) for row in rows}
        folds = [fold for fold in set(fold_of.values()) if fold >= 0]
        train_folds = np.random.choice(folds, int(0.8 * len(folds)), replace=False).tolist()
        expected_val |= {name for name, fold in fold_of.items() if fold >= 0 and fold not in train_folds}
        kept |= {name for name, fold in fold_of.items() if fold >= 0}

    split_dataset("melanoma", root, "paper", None, None, tmp_path / "melanoma.csv")
    assignment = split_of(tmp_path / "melanoma.csv")
    assert set(assignment) == kept  # the tfrecord -1 duplicates are in no split
    assert ids_in(assignment, "val") == expected_val


def test_melanoma_paper_split_needs_the_tfrecord_folds(tmp_path):
    root = write_fixture("melanoma", tmp_path / "melanoma", per_class=3, layout="official")
    with pytest.raises(ValueError, match="tfrecord"):
        make_split(open_dataset("melanoma", root), "paper")


def test_another_seed_warns_that_the_paper_is_not_reproduced(tmp_path):
    samples = open_dataset("aptos", write_fixture("aptos", tmp_path / "aptos", per_class=5))
    with pytest.warns(UserWarning, match="no longer reproduces"):
        _, path, _ = resolve_split(samples, method="paper", seed=7, out_dir=tmp_path / "splits")
    assert path.name == "aptos-paper-seed7.csv"
    assert split_of(path) != split_of(resolve_split(samples, method="paper", out_dir=tmp_path / "splits")[1])


# ---------------------------------------------------------------- official splits

def test_cct20_official_split_comes_from_the_annotation_files(tmp_path):
    root = write_fixture("cct20", tmp_path / "cct20", per_class=2)
    expected = {}
    for split in ("train", "cis_val", "cis_test", "trans_val", "trans_test"):
        coco = json.loads((root / "eccv_18_annotation_files" / f"{split}_annotations.json").read_text())
        category = {a["image_id"]: a["category_id"] for a in coco["annotations"]}
        expected.update({image["id"]: split for image in coco["images"] if category[image["id"]] != 30})

    samples = open_dataset("cct20", root)
    assert default_method(samples.spec) == "official"
    indices, path, sha = resolve_split(samples, out_dir=tmp_path / "splits")
    assert path.name == "cct20-official.csv" and sha == sha256_file(path)
    assert split_of(path) == expected
    assert list(indices) == list(samples.spec.splits)  # every split, in the registry's order
    assert sum(len(rows) for rows in indices.values()) == len(samples)
    with pytest.raises(ValueError, match="no seed"):
        make_split(samples, "official", seed=1)
    with pytest.raises(ValueError, match="--method official"):
        make_split(samples, "stratified")


# ---------------------------------------------------------------- stratified splits

def test_stratified_split_is_class_balanced_and_byte_identical(tmp_path):
    samples = open_dataset("digits")
    indices, path, sha = resolve_split(samples, out_dir=tmp_path / "a")
    _, again, sha_again = resolve_split(samples, out_dir=tmp_path / "b")
    assert path.name == "digits-stratified-seed0.csv"
    assert path.read_bytes() == again.read_bytes() and sha == sha_again == sha256_file(path)

    assert sorted(np.concatenate(list(indices.values())).tolist()) == list(range(len(samples)))
    for label, n in enumerate(samples.class_counts()):
        assert (samples.labels[indices["val"]] == label).sum() == int(np.floor(0.2 * n + 0.5))

    other = write_split_file(tmp_path / "seed1.csv", samples, make_split(samples, "stratified", seed=1))
    assert other != sha


def test_resolve_split_reads_a_given_file_and_never_overwrites_a_changed_one(tmp_path):
    samples = open_dataset("digits")
    indices, path, sha = resolve_split(samples, out_dir=tmp_path)
    given, given_path, given_sha = resolve_split(samples, split_file=path)
    assert given_path == path and given_sha == sha
    assert all((given[name] == indices[name]).all() for name in indices) and list(given) == list(indices)

    header, rows = read_csv(path)
    rows[0][2] = "val" if rows[0][2] == "train" else "train"
    write_csv(path, header, rows)
    with pytest.raises(FileExistsError, match=str(path)):
        resolve_split(samples, out_dir=tmp_path)


def test_a_second_copy_at_another_root_is_told_how_to_keep_its_own_split_file(tmp_path, monkeypatch):
    """Issue 15.11: the split file check names the way out, and the command it names works."""
    monkeypatch.chdir(tmp_path)
    first = write_fixture("aptos", tmp_path / "first" / "aptos", per_class=5, seed=0)
    second = write_fixture("aptos", tmp_path / "second" / "aptos", per_class=5, seed=1)
    resolve_split(open_dataset("aptos", first))  # writes splits/aptos-paper-seed414.csv in the current folder
    with pytest.raises(SplitFileExistsError) as error:
        resolve_split(open_dataset("aptos", second))
    message = str(error.value)
    other = Path("splits") / "aptos-paper-seed414-other-copy.csv"
    command = f"python splits.py aptos --root {second} --method paper --seed 414 --out {other}"
    assert f"`{command}`" in message and f"--split-file {other}" in message
    assert "another copy of the dataset at another --root" in message
    assert "use it as the split file as it is" not in message

    result = run_splits(*command.split()[2:], cwd=tmp_path)  # the command as the message gives it
    assert result.returncode == 0, result.stderr
    indices, path, _ = resolve_split(open_dataset("aptos", second), split_file=other)
    assert path == other and sum(map(len, indices.values())) == 25
    assert sorted(p.name for p in (tmp_path / "splits").iterdir()) == ["aptos-paper-seed414-other-copy.csv",
                                                                       "aptos-paper-seed414.csv"]

def test_hpa_stratified_split_is_multilabel_73_18_9():
    rng = np.random.default_rng(0)
    labels = (rng.random((600, 28)) < np.linspace(0.02, 0.4, 28)).astype(np.uint8)
    labels[labels.sum(axis=1) == 0, 0] = 1
    samples = fake_samples("hpa", labels)
    assert default_method(samples.spec) == "paper"  # the published file, which must be imported
    indices = split_indices(make_split(samples, "stratified"), samples.spec)

    fractions = [len(indices[name]) / len(samples) for name in ("train", "val", "test_val")]
    assert fractions == pytest.approx([0.73, 0.18, 0.09], abs=0.02)
    for label in np.flatnonzero(labels.sum(axis=0) >= 50):  # each common label is spread like the samples
        per_split = [labels[indices[name], label].sum() / labels[:, label].sum() for name in indices]
        assert per_split == pytest.approx([0.73, 0.18, 0.09], abs=0.06)
    assert (make_split(samples, "stratified") == make_split(samples, "stratified")).all()


def test_melanoma_stratified_split_keeps_patients_together(tmp_path):
    samples = open_dataset("melanoma", write_fixture("melanoma", tmp_path / "melanoma", per_class=4))
    assignment = make_split(samples, "stratified")
    patients = samples.columns["patient_id"]
    for patient in set(patients) - {""}:
        assert len(set(assignment[patients == patient])) == 1, patient
    val = assignment == "val"
    assert 0.1 < val.mean() < 0.3
    assert set(samples.labels[val]) == {0, 1}


def test_paper_split_of_hpa_must_be_imported():
    samples = fake_samples("hpa", np.eye(28, dtype=np.uint8))
    with pytest.raises(ValueError, match="--from"):
        make_split(samples, "paper")


def test_hpa_without_its_published_file_stops_and_names_the_way_out(hpa, tmp_path):
    root, _ = hpa
    samples = open_dataset("hpa", root)
    with pytest.raises(PaperSplitFileNeeded) as error:
        resolve_split(samples, out_dir=tmp_path)  # what train.py does without --split-file
    message = str(error.value)
    for part in ("split.stratified.small.0.csv", "https://github.com/mlfoundations/imagenet-applications-transfer",
                 "splits/hpa/", f"python splits.py hpa --root {root} --from split.stratified.small.0.csv",
                 "splits/hpa-from-split.stratified.small.0.csv", "train.py and grid.py then find it",
                 "--split-method stratified", "NOT the paper's"):
        assert part in message, part
    assert not list(tmp_path.iterdir())  # nothing written

    result = run_splits("hpa", "--root", str(root), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("splits.py: error: hpa: the paper's split is a published file")


def test_hpa_finds_its_imported_published_file_without_split_file(hpa, tmp_path, monkeypatch):
    """Imported once with splits.py --from, Park's file is HPA's default split: grid.py can plan HPA beside the other
    datasets, whose splits need no file. On a copy that is not the published data it is not called the paper's."""
    root, rows = hpa
    monkeypatch.chdir(tmp_path)
    published = tmp_path / "split.stratified.small.0.csv"
    write_csv(published, ["Id", "Target", "Split"], rows)
    assert run_splits("hpa", "--root", str(root), "--from", str(published), cwd=tmp_path).returncode == 0
    imported = tmp_path / "splits" / "hpa-from-split.stratified.small.0.csv"
    resolved = resolve(open_dataset("hpa", root))
    assert resolved.path == Path("splits/hpa-from-split.stratified.small.0.csv")
    assert resolved.sha256 == sha256_file(imported) and resolved.method == "paper" and resolved.papers is False
    assert "imported as splits/hpa-from-split.stratified.small.0.csv" in resolved.description
    assert "NOT the paper's split, which has train 22,582, val 5,664, test_val 2,826" in resolved.description
    assert {name: len(found) for name, found in resolved.indices.items()} == \
        {name: sum(split == name for *_, split in rows) for name in ("train", "val", "test_val")}


def test_hpa_stratified_split_proceeds_labelled_as_not_the_papers(hpa, tmp_path):
    root, _ = hpa
    resolved = resolve(open_dataset("hpa", root), method="stratified", out_dir=tmp_path)
    assert resolved.path.name == "hpa-stratified-seed0.csv" and (resolved.method, resolved.seed) == ("stratified", 0)
    assert resolved.papers is False
    assert "NOT the paper's split, which is the published split.stratified.small.0.csv" in resolved.description
    result = run_splits("hpa", "--root", str(root), "--method", "stratified", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "NOT the paper's split" in result.stdout


def test_resolve_says_whether_a_split_is_the_papers(tmp_path):
    fixture = open_dataset("aptos", write_fixture("aptos", tmp_path / "aptos", per_class=5))
    # the published APTOS were these 25 images: the paper's rule on them is the paper's split
    aptos = dataclasses.replace(fixture, spec=dataclasses.replace(fixture.spec, published=Published(25, (5,) * 5)))
    paper = resolve(aptos, out_dir=tmp_path / "splits")
    assert (paper.method, paper.seed, paper.papers, paper.papers_method_on) == ("paper", 414, True, None)
    assert paper.description == "method 'paper', seed 414 (the paper's split)"
    # as many images, other classes: other data, split by the paper's rule
    other = dataclasses.replace(aptos.spec, published=Published(25, (9, 4, 4, 4, 4)))
    assert resolve(dataclasses.replace(aptos, spec=other), out_dir=tmp_path / "other").papers_method_on == {
        "images": 25, "published": 25, "counted": "images",
        "differences": ["class 'No DR': 5 of 9", "class 'Mild': 5 of 4", "class 'Moderate': 5 of 4",
                        "class 'Severe': 5 of 4", "class 'Proliferative DR': 5 of 4"]}
    partial = resolve(fixture, out_dir=tmp_path / "splits")  # the fixture against the real APTOS: same split file
    assert (partial.papers, partial.sha256) == (False, paper.sha256)
    assert partial.papers_method_on["differences"][0] == "25 of 3,662 images"
    assert "the paper's method on 25 of 3,662 images, NOT the paper's split" in partial.description
    with pytest.warns(UserWarning):
        assert resolve(aptos, method="paper", seed=1, out_dir=tmp_path / "splits").papers is False
    assert resolve(aptos, method="stratified", out_dir=tmp_path / "splits").papers is False
    given = resolve(aptos, split_file=paper.path)
    assert (given.method, given.papers, given.sha256) == (None, None, paper.sha256)
    digits = resolve(open_dataset("digits"), out_dir=tmp_path / "splits")
    assert digits.papers is False and "the paper did not use digits" in digits.description


def test_the_papers_method_on_a_partial_copy_is_recorded_and_reported_as_not_the_papers_split(tmp_path):
    """Issue 20.1: 50 of EuroSAT's 27,000 images split by the paper's rule: splits.py, train.py's record and
    analyze.py's report all say so, never "the paper's split"."""
    root = write_fixture("eurosat", tmp_path / "eurosat", per_class=5)
    printed = run_splits("eurosat", "--root", str(root), "--method", "paper", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    described = "method 'paper', seed 42 (the paper's method on 50 of 27,000 images, NOT the paper's split)"
    assert printed.stdout.splitlines()[1] == f"split: {described}"
    assert printed.stdout.splitlines()[2].startswith("this copy is not the data the paper split (EuroSAT RGB")
    assert "class 'Highway': 5 of 2,500; and 6 more" in printed.stdout and "(the paper's split)" not in printed.stdout

    train(["--dataset", "eurosat", "--root", str(root), "--model", "resnet18", "--weights", "random", "--epochs", "1",
           "--batch-size", "8", "--img-size", "16", "--workers", "0", "--split-method", "paper"], tmp_path)
    record = only_record(tmp_path / "runs")["dataset"]
    assert (record["papers_split"], record["split_description"]) == (False, described)
    assert record["papers_method_on"]["images"] == 50 and record["papers_method_on"]["published"] == 27000
    assert record["papers_method_on"]["differences"][:2] == ["50 of 27,000 images", "class 'AnnualCrop': 5 of 3,000"]

    analyzed = subprocess.run([sys.executable, str(REPO / "analyze.py"), "runs", "--n-boot", "50"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert analyzed.returncode == 0, analyzed.stderr
    report = (tmp_path / "reports" / "report.md").read_text()
    assert f"eurosat: NOT the paper's split, so not the paper's experiment: {described}" in report


def test_train_on_all_and_extra_training_data(tmp_path):
    """The data side of train.py --extra-train dr2015 --train-on all: APTOS's split, then everything trains."""
    aptos = open_dataset("aptos", write_fixture("aptos", tmp_path / "aptos", per_class=5))
    dr2015 = open_dataset("dr2015", write_fixture("dr2015", tmp_path / "dr2015", per_class=3))
    indices = resolve(aptos, out_dir=tmp_path / "splits").indices
    everything = train_on_all(indices, aptos.spec)
    assert list(everything) == ["train"] and everything["train"].tolist() == list(range(len(aptos)))

    combined = concatenate(aptos, dr2015)
    with_extra = with_extra_training(indices, combined.spec, len(aptos), len(dr2015))
    assert (with_extra["val"] == indices["val"]).all()  # selection stays on APTOS alone
    assert set(with_extra["train"]) == set(indices["train"]) | set(range(len(aptos), len(combined)))
    final = train_on_all(with_extra, combined.spec)
    assert list(final) == ["train"] and final["train"].tolist() == list(range(len(combined)))
    assert {combined.columns["dataset"][i] for i in final["train"]} == {"aptos", "dr2015"}
    with pytest.raises(ValueError, match="already in the training split"):
        with_extra_training(with_extra, combined.spec, len(aptos), len(dr2015))

    cct20 = open_dataset("cct20", write_fixture("cct20", tmp_path / "cct20", per_class=2))
    merged = train_on_all(resolve(cct20, out_dir=tmp_path / "splits").indices, cct20.spec)
    assert list(merged) == ["train", "cis_test", "trans_val", "trans_test"]  # cis_val joined train


def test_dr2015_stratified_split_keeps_both_eyes_of_a_patient_together(tmp_path):
    samples = open_dataset("dr2015", write_fixture("dr2015", tmp_path / "dr2015", per_class=6))
    assert default_method(samples.spec) == "stratified"
    assignment = make_split(samples, "stratified")
    for patient in set(samples.columns["patient_id"]):
        assert len(set(assignment[samples.columns["patient_id"] == patient])) == 1, patient


def test_summary_says_what_the_loader_left_out(tmp_path):
    """Issue 15.12: the printed sample count says that Melanoma's duplicate images were left out."""
    root = write_fixture("melanoma", tmp_path / "melanoma", per_class=3)
    summary = split_dataset("melanoma", root, "paper", None, None, tmp_path / "melanoma.csv")
    assert summary.splitlines()[0] == "melanoma: 60 samples; left out: 4 duplicate image (tfrecord -1)"


def test_expected_errors_of_the_command_line_are_one_line(tmp_path):
    missing = run_splits("aptos", "--root", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.startswith(f"splits.py: error: dataset 'aptos' at {tmp_path / 'nowhere'}")
    official = run_splits("digits", "--method", "official", cwd=tmp_path)
    assert official.returncode == 2 and "Traceback" not in official.stderr
    assert "digits: the dataset's files define no splits" in official.stderr
    eurosat = write_fixture("eurosat", tmp_path / "eurosat", per_class=2)
    inner = run_splits("eurosat", "--root", str(eurosat / "2750"), cwd=tmp_path)  # the image folder itself
    assert inner.returncode == 1 and "Traceback" not in inner.stderr
    assert f"give the folder that contains 2750/ (--root {eurosat})" in inner.stderr


def test_help_shows_each_default_once(tmp_path):
    """Issue 15.7: no '(default: None)' after a default said in words, and every set default shown once."""
    text = " ".join(run_splits("--help", cwd=tmp_path).stdout.split())
    assert "default: None" not in text and "datasets/<dataset> when not given" in text
    from common import cli
    from data.inputs import add_data_arguments
    parser = cli.parser("train.py and cache.py's data flags")
    add_data_arguments(parser)  # as train.py and cache.py use it
    help_text = " ".join(parser.format_help().split())
    assert "default: None" not in help_text and help_text.count("(default: rgb)") == 1
    assert "datasets/<dataset> when not given" in help_text


# ---------------------------------------------------------------- importing and checking split files

@pytest.fixture(scope="module")
def hpa(tmp_path_factory):
    """(root, published-style rows Id,Target,Split) for a small HPA fixture."""
    root = write_fixture("hpa", tmp_path_factory.mktemp("hpa") / "hpa", per_class=2)
    _, rows = read_csv(root / "train.csv")
    names = ["train"] * 7 + ["val"] * 2 + ["test_val"]
    return root, [[sample_id, target, names[i % 10]] for i, (sample_id, target) in enumerate(rows)]


def test_hpa_published_split_file_is_imported(hpa, tmp_path):
    root, rows = hpa
    published = tmp_path / "split.stratified.small.0.csv"
    write_csv(published, ["Id", "Target", "Split"], rows[::-1])  # any row order
    out = tmp_path / "hpa.csv"
    summary = split_dataset("hpa", root, None, None, published, out)

    assert split_of(out) == {sample_id: split for sample_id, _, split in rows}
    assert "imported from" in summary and sha256_file(out) in summary
    samples = open_dataset("hpa", root)
    assert (read_split_file(out, samples) == read_split_file(published, samples)).all()


def unknown_id(rows):
    rows[3][0] = "not-a-sample"


def missing_id(rows):
    del rows[4]


def other_target(rows):
    rows[2][1] = "27" if rows[2][1] != "27" else "26"


def bad_split_name(rows):
    rows[0][2] = "test"


def repeated_id(rows):
    rows.append(list(rows[0]))


def no_val_rows(rows):
    for row in rows:
        row[2] = "train" if row[2] == "val" else row[2]


@pytest.mark.parametrize("edit, expected", [
    (unknown_id, ["row 5", "field 'Id'", "'not-a-sample' is not a sample of hpa"]),
    (missing_id, ["have no row"]),
    (other_target, ["row 4", "field 'Target'", "disagrees"]),
    (bad_split_name, ["row 2", "field 'Split'", "'test' is not one of train, val, test_val"]),
    (repeated_id, ["field 'Id'", "is repeated (first on row 2)"]),
    (no_val_rows, ["field 'Split'", "no row is in 'val'"]),
])
def test_bad_split_files_are_refused_with_file_row_and_field(hpa, tmp_path, edit, expected):
    root, rows = hpa
    rows = [list(row) for row in rows]
    edit(rows)
    bad = tmp_path / "bad.csv"
    write_csv(bad, ["Id", "Target", "Split"], rows)
    with pytest.raises(SplitFileError) as info:
        split_dataset("hpa", root, None, None, bad, tmp_path / "out.csv")
    message = str(info.value)
    assert str(bad) in message and all(part in message for part in expected), message
    assert not (tmp_path / "out.csv").exists()
    if edit is missing_id:
        assert hpa[1][4][0] in message


def test_split_file_header_must_name_the_columns(hpa, tmp_path):
    root, rows = hpa
    bad = tmp_path / "bad.csv"
    write_csv(bad, ["Id", "Labels", "Split"], rows)
    result = subprocess.run([sys.executable, str(REPO / "splits.py"), "hpa", "--root", str(root), "--from", str(bad)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert str(bad) in result.stderr and "row 1" in result.stderr and "'label'" in result.stderr
    assert "Traceback" not in result.stderr


def test_write_and_read_round_trip_multilabel(hpa, tmp_path):
    root, _ = hpa
    samples = open_dataset("hpa", root)
    assignment = make_split(samples, "stratified", seed=3)
    sha = write_split_file(tmp_path / "hpa.csv", samples, assignment)
    assert sha == sha256_file(tmp_path / "hpa.csv")
    assert (read_split_file(tmp_path / "hpa.csv", samples) == assignment).all()
    _, rows = read_csv(tmp_path / "hpa.csv")
    assert [row[1] for row in rows] == [" ".join(map(str, np.flatnonzero(row))) for row in samples.labels]
    with pytest.raises(ValueError, match="not among"):
        render_split_file(samples, np.where(assignment == "val", "validation", assignment))
