"""The dataset loaders read each source's native layout, and every bad download is reported clearly.

Each dataset is written by data.synthetic in its exact layout, opened through data.open_dataset and checked:
labels, classes, channel order, the Melanoma 2019/2020 merge, CCT-20's empty class, EuroSAT's ImageFolder order,
CIFAR-10's pickles; then each kind of broken input is planted and the error must name the file and the field.
"""
from __future__ import annotations

import json
import pickle
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from torchvision.datasets import ImageFolder

from data import (
    ALL_PROBLEMS_VARIABLE,
    BadImageError,
    DatasetError,
    IncompatibleDatasetsError,
    concatenate,
    describe,
    open_dataset,
)
from data.synthetic import write_fixture, write_hpa_composites

from conftest import read_csv, write_csv


def make(name: str, tmp_path: Path, per_class: int = 2, **options) -> Path:
    return write_fixture(name, tmp_path / name, per_class=per_class, **options)


def error_of(name: str, root: Path, **options) -> str:
    """The DatasetError's message followed by all its problems (the message shows only the first ten)."""
    with pytest.raises(DatasetError) as info:
        open_dataset(name, root, **options)
    return "\n".join([str(info.value), *info.value.problems])


# ---------------------------------------------------------------- each dataset read correctly

def test_aptos_labels_ids_and_files(tmp_path):
    root = make("aptos", tmp_path, per_class=3)
    header, rows = read_csv(root / "train.csv")
    samples = open_dataset("aptos", root)
    assert header == ["id_code", "diagnosis"]
    assert samples.ids == [row[0] for row in rows]
    assert samples.labels.dtype == np.int64 and samples.labels.tolist() == [int(row[1]) for row in rows]
    assert samples.class_counts().tolist() == [3] * 5
    assert samples.image_files[0] == (root / "train_images" / f"{rows[0][0]}.png",)
    assert samples.read_image(0).shape == (32, 32, 3) and samples.read_image(0).dtype == np.uint8


def test_dr2015_reads_the_competitions_native_layout(tmp_path):
    root = make("dr2015", tmp_path, per_class=3)
    header, rows = read_csv(root / "trainLabels.csv")
    samples = open_dataset("dr2015", root)
    assert header == ["image", "level"] and samples.ids == [row[0] for row in rows]
    assert samples.labels.tolist() == [int(row[1]) for row in rows] and samples.class_counts().tolist() == [3] * 5
    assert samples.image_files[0] == (root / "train" / f"{rows[0][0]}.jpeg",)
    assert samples.read_image(len(samples) - 1).shape == (32, 32, 3)
    assert samples.class_names == open_dataset("aptos", make("aptos", tmp_path)).class_names  # the same grades
    patient, eye = rows[0][0].split("_")
    assert eye == "left" and samples.columns["patient_id"][0] == patient == samples.columns["patient_id"][1]


def test_dr2015_combines_with_aptos_as_extra_training_data(tmp_path):
    aptos = open_dataset("aptos", make("aptos", tmp_path, per_class=2))
    dr2015 = open_dataset("dr2015", make("dr2015", tmp_path, per_class=3))
    combined = concatenate(aptos, dr2015)
    assert len(combined) == len(aptos) + len(dr2015) and combined.spec.name == "aptos"
    assert combined.ids[:len(aptos)] == aptos.ids  # APTOS's ids unchanged: its split files still apply
    assert combined.ids[len(aptos):] == [f"dr2015/{sample_id}" for sample_id in dr2015.ids]
    assert len(set(combined.ids)) == len(combined)
    assert combined.columns["dataset"].tolist() == ["aptos"] * len(aptos) + ["dr2015"] * len(dr2015)
    assert combined.columns["patient_id"].tolist() == [""] * len(aptos) + dr2015.columns["patient_id"].tolist()
    assert combined.labels.tolist() == aptos.labels.tolist() + dr2015.labels.tolist()
    np.testing.assert_array_equal(combined.read_image(len(aptos)), dr2015.read_image(0))
    np.testing.assert_array_equal(combined.read_image(0), aptos.read_image(0))
    assert describe(combined) == "aptos + dr2015: 25 samples (10 aptos + 15 dr2015)"
    assert [part["root"] for part in combined.options["concatenated"]] == [str(aptos.root), str(dr2015.root)]


@pytest.mark.parametrize("other, expected", [("cassava", "labels mean different things"),
                                             ("digits", "only datasets read from image files"),
                                             ("cct20", "labels mean different things")])
def test_datasets_whose_labels_differ_are_not_combined(tmp_path, other, expected):
    aptos = open_dataset("aptos", make("aptos", tmp_path))
    if other == "digits":
        extra = open_dataset("digits")
        extra = type(extra)(**{**extra.__dict__, "spec": aptos.spec, "class_names": aptos.class_names})
    else:
        extra = open_dataset(other, make(other, tmp_path))
    with pytest.raises(IncompatibleDatasetsError, match=expected):
        concatenate(aptos, extra)


def test_problem_lists_say_how_to_see_every_problem(tmp_path, monkeypatch):
    """Issue 15.12: a long problem list ends with how to see it all, and that way works."""
    root = make("aptos", tmp_path, per_class=3)
    for path in (root / "train_images").iterdir():
        path.unlink()
    monkeypatch.delenv(ALL_PROBLEMS_VARIABLE, raising=False)
    with pytest.raises(DatasetError) as info:
        open_dataset("aptos", root)
    message = str(info.value)
    assert message.count("image file is missing") == 10
    assert message.endswith(f"... and 5 more (set {ALL_PROBLEMS_VARIABLE}=1 to list them all)")
    monkeypatch.setenv(ALL_PROBLEMS_VARIABLE, "1")
    with pytest.raises(DatasetError) as info:
        open_dataset("aptos", root)
    assert str(info.value).count("image file is missing") == 15 and "more" not in str(info.value)


def test_cassava_class_names_come_from_the_json_map(tmp_path):
    root = make("cassava", tmp_path)
    names = {str(label): f"disease {label}" for label in range(5)}
    (root / "label_num_to_disease_map.json").write_text(json.dumps(names))
    samples = open_dataset("cassava", root)
    _, rows = read_csv(root / "train.csv")
    assert samples.class_names == tuple(f"disease {label}" for label in range(5))
    assert samples.labels.tolist() == [int(row[1]) for row in rows]
    assert samples.image_files[0] == (root / "train_images" / rows[0][0],)


@pytest.mark.parametrize("name, suffix", [("aptos", ".png"), ("cassava", ".jpg")])
def test_read_image_returns_rgb(tmp_path, name, suffix):
    root = make(name, tmp_path)
    samples = open_dataset(name, root)
    assert samples.image_files[0][0].suffix == suffix
    assert cv2.imwrite(str(samples.image_files[0][0]), np.full((16, 16, 3), (0, 0, 255), np.uint8))  # red, as BGR
    image = samples.read_image(0)
    assert image[..., 0].min() > 200 and image[..., 2].max() < 60


def test_hpa_labels_are_multi_hot(tmp_path):
    root = make("hpa", tmp_path, per_class=1)
    _, rows = read_csv(root / "train.csv")
    samples = open_dataset("hpa", root)
    assert samples.labels.shape == (28, 28) and samples.labels.dtype == np.uint8
    for labels, (_, target) in zip(samples.labels, rows):
        assert set(np.flatnonzero(labels)) == {int(t) for t in target.split()}
    assert any(len(row[1].split()) == 2 for row in rows)


@pytest.mark.parametrize("channels, stains", [("rgb", ("red", "green", "blue")),
                                              ("rgby", ("red", "green", "blue", "yellow"))])
def test_hpa_channels_are_stacked_in_order(tmp_path, channels, stains):
    root = make("hpa", tmp_path, per_class=1)
    samples = open_dataset("hpa", root, channels=channels)
    assert samples.options["channels"] == channels and samples.num_channels == len(stains)
    image = samples.read_image(3)
    assert image.shape == (32, 32, len(stains))
    for channel, stain in enumerate(stains):
        expected = cv2.imread(str(root / "train" / f"{samples.ids[3]}_{stain}.png"), cv2.IMREAD_GRAYSCALE)
        np.testing.assert_array_equal(image[..., channel], expected)
    # the fixture's stains have brightness red 60 < blue 140 < yellow 180 (green carries the label squares)
    medians = np.median(image.reshape(-1, len(stains)), axis=0)
    assert abs(medians[0] - 60) < 10 and abs(medians[2] - 140) < 10
    if channels == "rgby":
        assert abs(medians[3] - 180) < 10


@pytest.mark.parametrize("channels", ["rgb", "rgby"])
def test_hpa_composite_dir_is_read_instead_of_the_stain_files(tmp_path, channels):
    root = make("hpa", tmp_path, per_class=1)
    composites = write_hpa_composites(root, tmp_path / "composites", channels)
    stained = open_dataset("hpa", root, channels=channels)
    composited = open_dataset("hpa", root, channels=channels, composite_dir=composites)
    assert composited.image_files[5] == (composites / f"{composited.ids[5]}.png",)
    assert composited.options["composite_dir"] == str(composites)
    np.testing.assert_array_equal(composited.read_image(5), stained.read_image(5))


def test_hpa_rejects_an_unknown_channel_option(tmp_path):
    with pytest.raises(ValueError, match="channels"):
        open_dataset("hpa", make("hpa", tmp_path, per_class=1), channels="bgr")


def test_melanoma_merges_2020_and_2019_and_counts_duplicates(tmp_path):
    root = make("melanoma", tmp_path)
    expected_ids, expected_labels, duplicates = [], [], 0
    for year in ("2020", "2019"):
        header, rows = read_csv(root / f"melanoma-{year}" / "train.csv")
        fold = header.index("tfrecord")
        duplicates += sum(row[fold] == "-1" for row in rows)
        expected_ids += [row[0] for row in rows if row[fold] != "-1"]
        expected_labels += [int(row[header.index("target")]) for row in rows if row[fold] != "-1"]
    samples = open_dataset("melanoma", root)
    assert samples.ids == expected_ids and samples.labels.tolist() == expected_labels
    assert duplicates == 4 and samples.options["excluded"] == {"duplicate image (tfrecord -1)": 4}
    assert describe(samples) == "melanoma: 40 samples; left out: 4 duplicate image (tfrecord -1)"
    assert Counter(samples.columns["year"].tolist()) == {"2020": 20, "2019": 20}
    assert samples.columns["tfrecord"].dtype == np.int64 and samples.columns["tfrecord"].min() == 0
    assert samples.class_names == ("benign", "malignant")
    year, fold, patient = (samples.columns[key] for key in ("year", "tfrecord", "patient_id"))
    for patient_id in set(patient.tolist()) - {""}:
        assert len(set(zip(year[patient == patient_id], fold[patient == patient_id]))) == 1
    assert samples.image_files[-1] == (root / "melanoma-2019" / "train" / f"{samples.ids[-1]}.jpg",)


def test_melanoma_2019_is_optional_unless_asked_for(tmp_path):
    root = make("melanoma", tmp_path)
    assert open_dataset("melanoma", root, years=("2020",)).options["years"] == ["2020"]
    shutil.rmtree(root / "melanoma-2019")
    samples = open_dataset("melanoma", root)
    assert set(samples.columns["year"].tolist()) == {"2020"} and samples.options["years"] == ["2020"]
    assert "melanoma-2019: folder is missing" in error_of("melanoma", root, years=("2020", "2019"))


def test_melanoma_official_2020_layout(tmp_path):
    root = make("melanoma", tmp_path, layout="official")
    header, rows = read_csv(root / "train.csv")
    samples = open_dataset("melanoma", root)
    assert "tfrecord" not in header and "tfrecord" not in samples.columns
    assert samples.ids == [row[0] for row in rows]
    assert samples.columns["patient_id"].tolist() == [row[1] for row in rows]
    assert set(samples.columns["year"].tolist()) == {"2020"} and samples.options["layout"] == "official"
    assert samples.image_files[0] == (root / "jpeg" / "train" / f"{rows[0][0]}.jpg",)
    assert "re-packaged layout" in error_of("melanoma", root, years=("2020", "2019"))


def test_melanoma_image_name_in_both_years_is_a_problem(tmp_path):
    root = make("melanoma", tmp_path)
    header, rows = read_csv(root / "melanoma-2019" / "train.csv")
    name_2020 = read_csv(root / "melanoma-2020" / "train.csv")[1][0][0]
    shutil.copy(root / "melanoma-2020" / "train" / f"{name_2020}.jpg", root / "melanoma-2019" / "train")
    rows[0][0] = name_2020
    write_csv(root / "melanoma-2019" / "train.csv", header, rows)
    message = error_of("melanoma", root)
    assert f"id '{name_2020}' occurs 2 times" in message
    assert "melanoma-2020/train.csv line 2" in message and "melanoma-2019/train.csv line 2" in message


def cct_file(root: Path, split: str) -> Path:
    return root / "eccv_18_annotation_files" / f"{split}_annotations.json"


def test_cct20_reads_all_five_files_and_removes_the_empty_class(tmp_path):
    root = make("cct20", tmp_path)
    samples = open_dataset("cct20", root)
    expected_ids, expected_categories = [], []
    for split in ("train", "cis_val", "cis_test", "trans_val", "trans_test"):
        coco = json.loads(cct_file(root, split).read_text())
        category_of = {a["image_id"]: a["category_id"] for a in coco["annotations"]}
        non_empty = [image["id"] for image in coco["images"] if category_of[image["id"]] != 30]
        assert [i for i, s in zip(samples.ids, samples.official_split) if s == split] == non_empty
        expected_ids += non_empty
        expected_categories += [category_of[i] for i in non_empty]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    class_ids = sorted(set(names) - {30})
    assert samples.ids == expected_ids and len(samples.class_names) == 15 and "empty" not in samples.class_names
    assert samples.class_names == tuple(names[c] for c in class_ids)
    assert samples.labels.tolist() == [class_ids.index(c) for c in expected_categories]
    assert samples.options["excluded"] == {"annotated empty (category 30)": 10}
    assert samples.class_counts().tolist() == [2 + 4 * 1] * 15
    assert set(samples.columns["location"][samples.official_split == "trans_test"].tolist()) <= {"10", "11"}
    assert samples.image_files[0] == (root / "eccv_18_all_images_sm" / f"{samples.ids[0]}.jpg",)


def edit_coco(root: Path, split: str, edit) -> dict:
    coco = json.loads(cct_file(root, split).read_text())
    edit(coco)
    cct_file(root, split).write_text(json.dumps(coco))
    return coco


def test_cct20_conflicting_categories_are_a_problem(tmp_path):
    root = make("cct20", tmp_path)
    coco = edit_coco(root, "cis_val", lambda c: c["annotations"].append(
        {"id": "x", "image_id": c["images"][0]["id"], "category_id": 51 if c["annotations"][0]["category_id"] != 51
         else 1}))
    message = error_of("cct20", root)
    assert "cis_val_annotations.json" in message and f"image {coco['images'][0]['id']!r} has conflicting" in message


def test_cct20_image_in_two_files_is_a_problem(tmp_path):
    root = make("cct20", tmp_path)
    train = json.loads(cct_file(root, "train").read_text())
    image = next(i for i in train["images"] if any(a["image_id"] == i["id"] and a["category_id"] != 30
                                                     for a in train["annotations"]))
    edit_coco(root, "trans_test", lambda c: (c["images"].append(image),
                                             c["annotations"].append({"id": "y", "image_id": image["id"],
                                                                      "category_id": 1})))
    message = error_of("cct20", root)
    assert f"id {image['id']!r} occurs 2 times" in message
    assert "train_annotations.json" in message and "trans_test_annotations.json" in message


def keep_only_empty_images(coco: dict) -> None:
    coco["annotations"] = [a for a in coco["annotations"] if a["category_id"] == 30]
    empty = {a["image_id"] for a in coco["annotations"]}
    coco["images"] = [i for i in coco["images"] if i["id"] in empty]


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c["annotations"].clear(), "has no annotation"),
    (lambda c: c["annotations"].append({"id": "z", "image_id": "ghost", "category_id": 1}),
     "refers to image 'ghost'"),
    (lambda c: c.pop("categories"), "not a COCO annotation file"),
    (lambda c: c["annotations"].append({"id": "z", "image_id": c["images"][0]["id"]}), "category_id"),
    (lambda c: c["images"][0].update(id="../../etc/passwd"), "contains a path separator"),
    (lambda c: keep_only_empty_images(c), "cis_test_annotations.json: no non-empty images"),
])
def test_cct20_bad_annotation_files_are_reported(tmp_path, edit, expected):
    root = make("cct20", tmp_path, per_class=1)
    edit_coco(root, "cis_test", edit)
    message = error_of("cct20", root)
    assert expected in message and "cis_test_annotations.json" in message


def test_cct20_needs_all_files_and_fifteen_classes(tmp_path):
    root = make("cct20", tmp_path, per_class=1)
    for split in ("train", "cis_val", "cis_test", "trans_val", "trans_test"):
        edit_coco(root, split, lambda c: [a.update(category_id=1) for a in c["annotations"] if a["category_id"] == 3])
    assert "found 14 non-empty categories" in error_of("cct20", root)
    cct_file(root, "trans_val").unlink()
    cct_file(root, "cis_val").write_text("{not json")
    message = error_of("cct20", root)
    assert "trans_val_annotations.json: file is missing" in message
    assert "cis_val_annotations.json: not valid JSON" in message


@pytest.mark.parametrize("torchvision_layout", [False, True])
def test_eurosat_order_is_torchvision_imagefolder_order(tmp_path, torchvision_layout):
    root = make("eurosat", tmp_path, per_class=11, size=(8, 8), torchvision_layout=torchvision_layout)
    folder = root / "eurosat" / "2750" if torchvision_layout else root / "2750"
    (folder / "Forest" / "nested").mkdir()
    shutil.copy(folder / "Forest" / "Forest_1.jpg", folder / "Forest" / "nested" / "A_first.jpg")
    (folder / "River" / "notes.txt").write_text("not an image")
    (folder / "README.md").write_text("not in a class folder")
    samples = open_dataset("eurosat", root)
    reference = ImageFolder(str(folder))
    assert tuple(reference.classes) == samples.class_names
    assert [(str(files[0]), label) for files, label in zip(samples.image_files, samples.labels)] == reference.samples
    assert "Forest/nested/A_first.jpg" in samples.ids and samples.ids[1] == "AnnualCrop/AnnualCrop_10.jpg"
    assert samples.options["excluded"] == {"no image file extension": 1, "file outside the class folders": 1}


def test_eurosat_class_folders_must_be_the_ten_classes(tmp_path):
    root = make("eurosat", tmp_path, per_class=1)
    shutil.rmtree(root / "2750" / "Highway")
    (root / "2750" / "Beach").mkdir()
    message = error_of("eurosat", root)
    assert "2750/Beach: unknown class folder" in message and "2750/Highway: class folder is missing" in message
    shutil.rmtree(root / "2750")
    assert "neither 2750/ nor eurosat/2750/ exists" in error_of("eurosat", root)


def test_cifar10_reads_the_pickles(tmp_path):
    root = make("cifar10", tmp_path, per_class=3)
    folder = root / "cifar-10-batches-py"
    with open(folder / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    batch["data"][0] = np.repeat(np.array([255, 0, 0], dtype=np.uint8), 1024)  # R, G, B planes: pure red
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    samples = open_dataset("cifar10", root)
    assert samples.images.shape == (60, 32, 32, 3) and samples.images.dtype == np.uint8
    assert Counter(samples.official_split.tolist()) == {"train": 30, "val": 30}
    assert samples.ids[0] == "train-00000" and samples.ids[30] == "test-00000" and len(set(samples.ids)) == 60
    assert samples.labels[30:].tolist() == batch["labels"] and samples.class_counts().tolist() == [6] * 10
    red = samples.read_image(30)
    assert (red[..., 0] == 255).all() and (red[..., 1:] == 0).all()


def test_cifar10_bad_batches_are_reported_and_foreign_pickles_refused(tmp_path):
    root = make("cifar10", tmp_path, per_class=1)
    folder = root / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    (folder / "data_batch_4").write_bytes(pickle.dumps(shutil.rmtree))  # a pickle that names a function
    with open(folder / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    batch["labels"][0] = 10
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    message = error_of("cifar10", root)
    assert "data_batch_3: file is missing" in message
    assert "data_batch_4: cannot be read as a CIFAR pickle (refusing to load shutil.rmtree)" in message
    assert "test_batch: labels[0] = 10 is out of range" in message
    (folder / "test_batch").write_bytes(pickle.dumps({**batch, "data": batch["data"][:0], "labels": []}))
    assert "the official val split has no images" in error_of("cifar10", root)


# ---------------------------------------------------------------- bad input, for every CSV-based dataset

# name: (fixture options, the labelled CSV, its id column, its label column, an out-of-range label)
CSV_CASES = {
    "aptos": ({}, "train.csv", "id_code", "diagnosis", "5"),
    "dr2015": ({}, "trainLabels.csv", "image", "level", "5"),
    "cassava": ({}, "train.csv", "image_id", "label", "5"),
    "hpa": ({"per_class": 1}, "train.csv", "Id", "Target", "28"),
    "melanoma": ({}, "melanoma-2020/train.csv", "image_name", "target", "2"),
    "melanoma-official": ({"layout": "official"}, "train.csv", "image_name", "target", "2"),
}


@pytest.fixture(params=list(CSV_CASES))
def csv_case(request, tmp_path):
    """(dataset name, root, CSV path, id column index, label column index, bad label) of a fresh fixture."""
    options, relative, id_column, label_column, bad_label = CSV_CASES[request.param]
    name = request.param.split("-")[0]
    root = write_fixture(name, tmp_path / name, **{"per_class": 2, **options})
    header, _ = read_csv(root / relative)
    return name, root, root / relative, header.index(id_column), header.index(label_column), bad_label


def test_missing_root_is_reported(tmp_path):
    for name in ("cct20", "aptos", "dr2015", "hpa", "melanoma", "cassava", "eurosat", "cifar10"):
        message = error_of(name, tmp_path / "nowhere")
        assert f"{tmp_path / 'nowhere'}: dataset folder does not exist" in message


def test_missing_csv_is_reported(csv_case):
    name, root, path, *_ = csv_case
    path.unlink()
    assert str(path) in error_of(name, root)


def test_missing_column_names_file_and_column(csv_case):
    name, root, path, _, label_column, _ = csv_case
    header, rows = read_csv(path)
    column = header.pop(label_column)
    write_csv(path, header, [row[:label_column] + row[label_column + 1:] for row in rows])
    assert f"{path}: column '{column}' is missing" in error_of(name, root)


def test_bad_labels_name_file_line_id_and_value(csv_case):
    name, root, path, id_column, label_column, bad_label = csv_case
    header, rows = read_csv(path)
    rows[0][label_column], rows[1][label_column] = bad_label, "abc"
    write_csv(path, header, rows)
    message = error_of(name, root)
    assert f"{path} line 2 (id {rows[0][id_column]!r}): {header[label_column]}" in message and bad_label in message
    assert f"{path} line 3 (id {rows[1][id_column]!r}): {header[label_column]} 'abc'" in message


def test_bad_image_files_are_named(csv_case):
    name, root, *_ = csv_case
    missing, empty, not_image = (files[0] for files in open_dataset(name, root).image_files[:3])
    missing.unlink()
    empty.write_bytes(b"")
    not_image.write_bytes(b"<html>404 not found</html>")
    message = error_of(name, root)
    assert f"{missing}: image file is missing" in message and f"{empty}: image file is empty" in message
    assert f"{not_image}: not a PNG or JPEG file" in message


BAD_IDS = {"../escape": "contains a path separator", "/etc/passwd": "contains a path separator",
           "sub\\dir": "contains a path separator", "..": "is not a file name"}


def test_ids_that_would_escape_the_root_are_rejected(csv_case):
    name, root, path, id_column, *_ = csv_case
    header, rows = read_csv(path)
    for row, bad_id in zip(rows, BAD_IDS):
        row[id_column] = bad_id
    write_csv(path, header, rows)
    message = error_of(name, root)
    for line, (bad_id, expected) in enumerate(BAD_IDS.items(), start=2):
        assert f"{path} line {line}: {header[id_column]} {bad_id!r} {expected}" in message


def test_duplicate_ids_are_reported_with_both_lines(csv_case):
    name, root, path, id_column, *_ = csv_case
    header, rows = read_csv(path)
    rows[1][id_column] = rows[0][id_column]
    write_csv(path, header, rows)
    assert f"id {rows[0][id_column]!r} occurs 2 times: {path} line 2; {path} line 3" in error_of(name, root)


def test_header_only_csv_is_an_empty_dataset(csv_case):
    name, root, path, *_ = csv_case
    header, _ = read_csv(path)
    write_csv(path, header, [])
    assert f"{path}: no data rows" in error_of(name, root)


def test_all_problems_are_reported_in_one_error(csv_case):
    name, root, path, id_column, label_column, bad_label = csv_case
    image = open_dataset(name, root).image_files[0][0]
    header, rows = read_csv(path)
    rows[-1][label_column] = bad_label
    rows.append(rows[0][:1] + rows[0][1:-1])  # one field short
    write_csv(path, header, rows)
    image.unlink()
    with pytest.raises(DatasetError) as info:
        open_dataset(name, root)
    assert len(info.value.problems) == 3
    assert f"{path} line {len(rows) + 1}: expected {len(header)} comma-separated fields" in info.value.problems


def test_corrupt_image_met_later_raises_bad_image_error(csv_case):
    name, root, *_ = csv_case
    samples = open_dataset(name, root)
    image = samples.image_files[0][0]
    image.write_bytes(image.read_bytes()[:12])  # a valid header, then nothing
    samples = open_dataset(name, root)  # the header check passes: no full decode up front
    with pytest.raises(BadImageError, match=str(image)):
        samples.read_image(0)


@pytest.mark.parametrize("target, expected", [("", "Target is empty"), ("3 28", "out of range"),
                                              ("1 x", "not a list of space-separated integers"),
                                              ("4 4", "repeats a label")])
def test_hpa_bad_targets(tmp_path, target, expected):
    root = make("hpa", tmp_path, per_class=1)
    header, rows = read_csv(root / "train.csv")
    rows[0][1] = target
    write_csv(root / "train.csv", header, rows)
    message = error_of("hpa", root)
    assert f"train.csv line 2 (id {rows[0][0]!r}): Target" in message and expected in message


def test_melanoma_bad_tfrecord(tmp_path):
    root = make("melanoma", tmp_path)
    path = root / "melanoma-2019" / "train.csv"
    header, rows = read_csv(path)
    rows[0][header.index("tfrecord")] = "-2"
    rows[1][header.index("tfrecord")] = "fold1"
    write_csv(path, header, rows)
    message = error_of("melanoma", root)
    assert f"{path} line 2 (id {rows[0][0]!r}): tfrecord -2 is out of range" in message
    assert f"{path} line 3 (id {rows[1][0]!r}): tfrecord 'fold1' is not an integer" in message


@pytest.mark.parametrize("mapping, expected", [({str(i): "x" for i in range(4)}, "expected keys"),
                                               ({str(i): "x" for i in range(1, 6)}, "expected keys"),
                                               (["a", "b"], "expected keys"), (None, "file is missing")])
def test_cassava_disease_map_must_have_five_entries(tmp_path, mapping, expected):
    root = make("cassava", tmp_path, per_class=1)
    path = root / "label_num_to_disease_map.json"
    if mapping is None:
        path.unlink()
    else:
        path.write_text(json.dumps(mapping))
    assert f"{path}: {expected}" in error_of("cassava", root)


def test_digits_are_scikit_learns_bundled_digits_read_without_importing_it():
    """data/digits.py reads scikit-learn's digits.csv.gz itself (importing scikit-learn costs every digits run a
    second): the same images and digits as load_digits."""
    from sklearn.datasets import load_digits

    from data.digits import bundled_digits

    images, digits = bundled_digits()
    bunch = load_digits()
    assert np.array_equal(images, bunch.images) and np.array_equal(digits, bunch.target)
