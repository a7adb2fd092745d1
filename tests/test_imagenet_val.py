"""evaluate.py --imagenet-val: the exact top-1 of a network whose answers are known, on a tiny ImageNet validation
folder in each layout (class folders; flat with the devkit's ground truth and meta.mat; flat with Kaggle's
LOC_val_solution.csv), with its Clopper-Pearson interval, a record, and the models-file entry that makes it the
model's top-1."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import scipy.io
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

import evaluate
import metrics
from common import errors
from evaluation.imagenet_layout import sorted_wnids
from nets import models_file, registry

WNIDS = sorted_wnids()
# Three classes, far apart in the sorted order, each with a colour the network below calls it by.
CLASS_OF_COLOUR = {"red": WNIDS[0], "green": WNIDS[1], "blue": WNIDS[417]}
RGB = {"red": (230, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 220)}
# (colour painted, true class by colour name): an image painted in another class's colour is answered wrongly.
IMAGES = [("red", "red"), ("red", "red"), ("green", "red"), ("green", "green"), ("green", "green"),
          ("blue", "blue"), ("red", "blue")]
CORRECT = sum(painted == truth for painted, truth in IMAGES)  # 5 of 7
# The devkit's ILSVRC2012 class ids are not the sorted-WordNet indices: a reader that used them as such would fail.
ILSVRC_ID = {WNIDS[0]: 449, WNIDS[1]: 3, WNIDS[417]: 1000, WNIDS[2]: 1}


def paint(path, colour: str) -> None:
    Image.new("RGB", (40, 30), RGB[colour]).save(path, quality=100)


def colour_network(path, val_folder) -> None:
    """A ResNet-18 checkpoint whose answer is the class of an image's colour: random layers, and a last layer fit so
    that each colour's features (a plain image of that colour, as decoded and normalised) score its class highest."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    net.fc = torch.nn.Identity()
    decoded = {colour: np.asarray(Image.open(next(val_folder.rglob(f"*{colour}*")))).reshape(-1, 3)[0]
               for colour in RGB}  # each colour as the JPEG decodes it

    def plain(colour: str) -> torch.Tensor:
        value = (torch.tensor(decoded[colour] / 255.0) - torch.tensor(registry.IMAGENET_MEAN)) / torch.tensor(
            registry.IMAGENET_STD)
        return value.float().view(1, 3, 1, 1).expand(1, 3, 224, 224)

    with torch.no_grad():
        features = torch.cat([net(plain(colour)) for colour in RGB]).double()  # 3 x 512
        targets = 20 * torch.eye(3, dtype=torch.float64) - 10  # +10 for its own class, -10 for the two others
        rows = targets @ torch.linalg.solve(features @ features.T, features)
        fc = torch.nn.Linear(512, 1000)
        fc.weight.zero_()
        fc.bias.fill_(-1000.0)
        index = [WNIDS.index(CLASS_OF_COLOUR[colour]) for colour in RGB]
        fc.weight[index] = rows.float()
        fc.bias[index] = 0.0
        net.fc = fc
        answers = [int(net(plain(colour)).argmax()) for colour in RGB]
    assert answers == index  # the network is what the test says it is
    save_file(net.state_dict(), path)


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """The same 7 images in the three layouts, and a models file with the colour network (top-1 not yet known)."""
    root = tmp_path_factory.mktemp("imagenet")
    folders, flat = root / "val-folders", root / "flat" / "val"
    flat.mkdir(parents=True)
    for number, (painted, truth) in enumerate(IMAGES, 1):
        name = f"ILSVRC2012_val_{number:08d}"
        (folders / CLASS_OF_COLOUR[truth]).mkdir(parents=True, exist_ok=True)
        paint(folders / CLASS_OF_COLOUR[truth] / f"{name}-{painted}.JPEG", painted)
        paint(flat / f"{name}.JPEG", painted)
    devkit = root / "flat" / "ILSVRC2012_devkit_t12" / "data"  # beside the flat folder, as the devkit unpacks
    devkit.mkdir(parents=True)
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{ILSVRC_ID[CLASS_OF_COLOUR[truth]]}\n" for _, truth in IMAGES))
    synsets = [(ident, wnid, f"class {wnid}", 0) for wnid, ident in ILSVRC_ID.items()]
    synsets.append((1001, "n00001740", "entity", 5))  # an inner node of the hierarchy, as meta.mat holds 860 of them
    scipy.io.savemat(devkit / "meta.mat", {"synsets": np.array(synsets, dtype=[
        ("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")])})
    kaggle = root / "kaggle" / "val"
    shutil.copytree(flat, kaggle)
    with open(kaggle.parent / "LOC_val_solution.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageId", "PredictionString"])
        for number, (_, truth) in enumerate(IMAGES, 1):
            wnid = CLASS_OF_COLOUR[truth]
            writer.writerow([f"ILSVRC2012_val_{number:08d}", f"{wnid} 1 2 30 20 {wnid} 3 4 10 10"])
    colour_network(root / "colour-net.safetensors", folders)
    models = root / "models.json"
    models.write_text(json.dumps({"models": [{
        "name": "colour_net", "label": "Colour net", "library": "torchvision", "constructor": "resnet18",
        "checkpoint": "colour-net.safetensors", "input_size": 224, "imagenet_top1": None}]}))
    yield {"class folders": folders, "devkit": flat, "kaggle": kaggle, "models": models, "root": root}
    registry.set_added([])


def measure(folder, models, out, *extra: str) -> dict:
    assert evaluate.main(["--imagenet-val", str(folder), "--model", "colour_net", "--models-file", str(models),
                          "--workers", "0", "--batch-size", "4", "--out", str(out), *extra]) == 0
    (record_path,) = out.glob("*/imagenet-val.json")
    return json.loads(record_path.read_text())


@pytest.mark.parametrize("layout", ["class folders", "devkit", "kaggle"])
def test_exact_top1_in_each_layout(imagenet, layout, tmp_path, capsys):
    record = measure(imagenet[layout], imagenet["models"], tmp_path / "out")
    assert (record["images"], record["correct"]) == (len(IMAGES), CORRECT)
    assert record["top1"] == pytest.approx(100 * CORRECT / len(IMAGES))
    low, high = metrics.clopper_pearson(CORRECT, len(IMAGES), 0.95)
    assert (record["interval"]["low"], record["interval"]["high"]) == pytest.approx((100 * low, 100 * high))
    assert record["weights_loaded"].startswith("imagenet:file:") and record["image_size"] == 224
    assert record["layout"].startswith({"class folders": "class folders", "devkit": "flat, labels from "
                                        "ILSVRC2012_validation_ground_truth.txt + meta.mat",
                                        "kaggle": "flat, labels from LOC_val_solution.csv"}[layout])
    predictions = np.load(next((tmp_path / "out").glob("*/predictions.npz")))
    assert int((predictions["predicted"] == predictions["labels"]).sum()) == CORRECT
    printed = capsys.readouterr().out
    assert "ImageNet top-1 71.429%" in printed and '"imagenet_top1": 71.429' in printed  # the entry to add


def test_measured_top1_becomes_the_models_top1(imagenet, tmp_path):
    models = tmp_path / "models.json"
    shutil.copy(imagenet["models"], models)
    shutil.copy(imagenet["root"] / "colour-net.safetensors", tmp_path)
    record = measure(imagenet["class folders"], models, tmp_path / "out", "--write-models-file", str(models))
    (entry,) = models_file.read(models)
    assert entry.imagenet_top1 == round(100 * CORRECT / len(IMAGES), 3) and entry.top1_image_size == 224
    assert entry.top1_source == record["top1_source"]
    assert entry.top1_source.startswith("measured on ImageNet val by evaluate.py --imagenet-val: 5/7 images correct")
    assert "Clopper-Pearson" in entry.top1_source and "commit" in entry.top1_source
    assert entry.checkpoint == str((tmp_path / "colour-net.safetensors").resolve())  # the rest of the entry is kept
    assert json.loads(models.read_text())["models"][0]["checkpoint"] == "colour-net.safetensors"


def test_bad_folders_and_commands_are_one_line_errors(imagenet, tmp_path):
    no_truth = tmp_path / "val"
    shutil.copytree(imagenet["devkit"], no_truth)
    with pytest.raises(errors.DataError, match="ground truth.*ILSVRC2012_validation_ground_truth.txt.*meta.mat.*"
                                               "--imagenet-devkit"):
        measure(no_truth, imagenet["models"], tmp_path / "out")
    stray = tmp_path / "folders"
    shutil.copytree(imagenet["class folders"], stray)
    (stray / "n99999999").mkdir()
    with pytest.raises(errors.DataError, match="n99999999 are not ImageNet-1k classes"):
        measure(stray, imagenet["models"], tmp_path / "out")
    broken = tmp_path / "broken"
    shutil.copytree(imagenet["class folders"], broken)
    image = sorted(broken.rglob("*.JPEG"))[3]
    image.write_bytes(image.read_bytes()[:200])  # cut short, as an interrupted copy leaves it
    with pytest.raises(errors.DataError, match=f"{image}: cannot be decoded .*replace the file"):
        measure(broken, imagenet["models"], tmp_path / "out")
    with pytest.raises(errors.UsageError, match="--imagenet-val needs --model"):
        evaluate.main(["--imagenet-val", str(stray)])
    with pytest.raises(errors.UsageError, match="resnet18 is a built-in model"):
        evaluate.main(["--imagenet-val", str(stray), "--model", "resnet18", "--write-models-file", "m.json"])
    with pytest.raises(errors.UsageError, match="--dataset.*leave them out"):
        evaluate.main(["--imagenet-val", str(stray), "--model", "resnet18", "--dataset", "digits"])
    with pytest.raises(errors.UsageError, match="at the size and with the transform of its weights; --img-size, "
                                                "--normalize belong to scoring"):
        evaluate.main(["--imagenet-val", str(stray), "--model", "resnet18", "--img-size", "288", "--normalize",
                       "model"])
