"""fid.py (frechet.py, inception.py, fidinputs.py): the Fréchet distance against closed forms and scipy, streaming
statistics, statistics files, the FID Inception network's weights loading, the resize, and the command line end to
end on fixture datasets with random weights on CPU (299 px Inception is slow on CPU, so sets are 6-8 images and
most runs stop at the 64-d block)."""
from __future__ import annotations

import csv
import json
import warnings

import cv2
import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image
from torchvision.models import inception_v3

import fid
from common import errors
from common.fileio import sha256_file
from data.synthetic import write_fixture
from frechet import inception, inputs
from frechet.distance import FeatureStats, RunningStats, frechet_distance, load_stats, save_stats


def fid_with_scipy(mu1, sigma1, mu2, sigma2):
    """The textbook formula with scipy's general matrix square root of the (non-symmetric) product."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sqrtm warns on singular products; its result is still checked below
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean).real)


def sample_stats(rng, n, d, scale=1.0, offset=0.0):
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * scale + offset
    return x.mean(axis=0), np.cov(x, rowvar=False)


def test_frechet_distance_matches_closed_form_for_diagonal_covariances_including_zero_variances():
    rng = np.random.default_rng(0)
    var1, var2 = rng.uniform(0, 3, 12), rng.uniform(0, 3, 12)
    var1[:4] = 0.0   # singular: a product with zero eigenvalues
    var2[2:6] = 0.0
    mu1, mu2 = rng.normal(size=12), rng.normal(size=12)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_matches_scipy_sqrtm_on_full_rank_and_singular_covariances():
    rng = np.random.default_rng(1)
    for n1, n2 in [(200, 300), (5, 8), (21, 4)]:   # full rank, then rank 4 and 7 (and 20, 3) in 20 dimensions
        mu1, sigma1 = sample_stats(rng, n1, 20)
        mu2, sigma2 = sample_stats(rng, n2, 20, scale=2.0, offset=1.0)
        ours = frechet_distance(mu1, sigma1, mu2, sigma2)
        # scipy's Schur square root is itself only ~1e-8 accurate on singular products
        assert ours == pytest.approx(fid_with_scipy(mu1, sigma1, mu2, sigma2), rel=1e-6)
        assert ours == pytest.approx(frechet_distance(mu2, sigma2, mu1, sigma1), rel=1e-9)  # symmetric


def test_fid_of_a_set_with_itself_is_zero_and_never_negative():
    rng = np.random.default_rng(2)
    values = []
    for n in (10, 1000) * 10:   # singular (10 images, 256 dims) and full rank
        features = np.abs(rng.standard_normal((n, 256)) @ rng.standard_normal((256, 256)) * 0.05)
        mu, sigma = features.mean(axis=0), np.cov(features, rowvar=False)
        values.append(frechet_distance(mu, sigma, mu, sigma))
    assert min(values) == 0.0 and max(values) < 1e-9   # rounding below zero (here in one case of 20) gives 0.0
    assert all(np.copysign(1.0, v) == 1.0 for v in values)  # and never -0.0, which prints as -0.0000


def test_frechet_distance_rejects_covariances_that_are_not_positive_semidefinite():
    indefinite = np.array([[1.0, 2.0], [2.0, 1.0]])   # variances positive, eigenvalue -1
    with pytest.raises(ValueError, match="sigma1 is not positive semi-definite"):
        frechet_distance(np.zeros(2), indefinite, np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="sigma2 is not positive semi-definite"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), indefinite)
    with pytest.raises(ValueError, match="different dimensions"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_both_covariances_are_checked_alike_even_where_the_other_is_singular():
    # sigma1 = diag(1, 0) hides sigma2's second dimension from A^T sigma2 A: checked only there, these passed
    singular = np.diag([1.0, 0.0])
    for broken, problem in ((np.diag([4.0, -0.1]), "sigma2 has a negative variance: -0.1 .* at dimension 1"),
                            (np.array([[4.0, 0.5], [0.0, 1.0]]), "sigma2 is not symmetric"),
                            (np.array([[4.0, 3.0], [3.0, 1.0]]), "sigma2 is not positive semi-definite")):
        with pytest.raises(ValueError, match=problem):
            frechet_distance(np.zeros(2), singular, np.zeros(2), broken)
        with pytest.raises(ValueError, match=problem.replace("sigma2", "sigma1")):
            frechet_distance(np.zeros(2), broken, np.zeros(2), singular)
    with pytest.raises(ValueError, match="mu2 contains NaN"):
        frechet_distance(np.zeros(2), np.eye(2), np.array([0.0, np.nan]), np.eye(2))


def broken_stats_files(folder, d=64):
    """pytorch-fid-style files (mu, sigma) each broken in one way, by the problem load_stats must name."""
    mu, sigma = sample_stats(np.random.default_rng(8), 100, d)
    nan_mu, inf_sigma, asymmetric, negative = mu.copy(), sigma.copy(), sigma.copy(), sigma.copy()
    nan_mu[5] = np.nan
    inf_sigma[1, 2] = inf_sigma[2, 1] = np.inf
    asymmetric[0, 1] += 0.1 * sigma.diagonal().max()
    negative[3, 3] = -1.0
    broken = {"mu contains NaN or infinite values": (nan_mu, sigma),
              "sigma contains NaN or infinite values": (mu, inf_sigma),
              "sigma is not symmetric": (mu, asymmetric),
              "sigma has a negative variance: -1 on its diagonal at dimension 3": (mu, negative),
              "sigma is not positive semi-definite": (mu, sigma - 1.01 * np.linalg.eigvalsh(sigma).max() / d)}
    paths = {}
    for number, (problem, (m, s)) in enumerate(broken.items()):
        paths[problem] = folder / f"broken{number}.npz"
        np.savez(paths[problem], mu=m, sigma=s)
    return paths


def test_statistics_files_with_broken_values_are_refused_on_loading_naming_the_file_and_field(tmp_path):
    for problem, path in broken_stats_files(tmp_path).items():
        with pytest.raises(errors.DataError, match=f"statistics file {path}: {problem}.*--save-stats"):
            load_stats(path)


def test_streaming_statistics_equal_mean_and_covariance_of_the_stacked_activations():
    rng = np.random.default_rng(3)
    features = rng.standard_normal((103, 16)) * rng.uniform(0.1, 5, 16) + 1e3  # a large offset tests cancellation
    running = RunningStats()
    for start, stop in [(0, 7), (7, 50), (50, 51), (51, 103)]:
        batch = features[start:stop]
        running.update(torch.from_numpy(batch) if start == 7 else batch)   # tensors and arrays alike
    stats = running.result()
    assert stats.num_images == 103
    np.testing.assert_allclose(stats.mu, features.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(features, rowvar=False), rtol=1e-9, atol=1e-12)


def test_saved_statistics_reload_to_the_same_fid_and_read_pytorch_fid_files(tmp_path):
    rng = np.random.default_rng(4)
    mu1, sigma1 = sample_stats(rng, 50, 8)
    mu2, sigma2 = sample_stats(rng, 60, 8, offset=0.5)
    save_stats(tmp_path / "a.npz", FeatureStats(mu1, sigma1, 50), {"weights": {"id": "w"}, "dims": 8})
    np.savez(tmp_path / "b.npz", mu=mu2, sigma=sigma2)   # a file as pytorch-fid writes it: mu and sigma only
    (a, info_a), (b, info_b) = load_stats(tmp_path / "a.npz"), load_stats(tmp_path / "b.npz")
    with np.load(tmp_path / "a.npz") as arrays:
        assert {"mu", "sigma"} <= set(arrays.files)
    assert (a.num_images, info_a["dims"], b.num_images, info_b) == (50, 8, None, None)
    assert frechet_distance(a.mu, a.sigma, b.mu, b.sigma) == frechet_distance(mu1, sigma1, mu2, sigma2)
    np.savez(tmp_path / "bad.npz", mean=mu1, sigma=sigma1)
    with pytest.raises(errors.DataError, match=r"bad.npz: no mu array \(keys found: mean, sigma\)"):
        load_stats(tmp_path / "bad.npz")
    np.savez(tmp_path / "six.npz", mu=mu2[:6], sigma=sigma2[:6, :6])   # files that do not say how they were made
    with pytest.raises(errors.UsageError, match="b.npz and .*six.npz have 8 and 6 dimensions"):
        fid.run([str(tmp_path / "b.npz"), str(tmp_path / "six.npz"), "--out-dir", str(tmp_path / "out")])


def test_resize_is_pil_bicubic_on_float_values_as_clean_fid():
    rng = np.random.default_rng(5)
    for height, width in [(8, 8), (32, 32), (500, 375), (300, 200)]:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        pil = np.stack([np.asarray(Image.fromarray(image[..., c].astype(np.float32), mode="F")
                                   .resize((299, 299), resample=Image.BICUBIC)) for c in range(3)])
        ours = inception.resize_for_inception(image)
        assert ours.shape == (3, 299, 299) and ours.dtype == torch.float32
        np.testing.assert_allclose(ours.numpy(), np.clip(pil, 0, 255), atol=0.01)
    image = rng.integers(0, 256, (299, 299, 3), dtype=np.uint8)
    assert torch.equal(inception.resize_for_inception(image), torch.from_numpy(image).permute(2, 0, 1).float())


def test_fid_weights_load_with_strict_keys_and_other_state_dicts_are_refused(tmp_path):
    net = inception.randomise(inception.build_fid_inception(), seed=7)
    assert isinstance(net.Mixed_7c, inception.FIDInceptionE) and net.Mixed_7c.max_pool and not net.Mixed_7b.max_pool
    assert net.fc.out_features == 1008 and net.AuxLogits is None
    torch.save(net.state_dict(), tmp_path / "weights.pth")
    model, info = inception.load_inception(str(tmp_path / "weights.pth"), dims=64)
    assert torch.equal(model.body[0].conv.weight, net.Conv2d_1a_3x3.conv.weight)
    assert info["sha256"] == sha256_file(tmp_path / "weights.pth") and info["id"].endswith(info["sha256"])
    torchvision_layout = inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()
    torch.save(torchvision_layout, tmp_path / "torchvision.pth")
    with pytest.raises(errors.DataError, match="(?s)is not the FID Inception state dict.*AuxLogits"):
        inception.load_inception(str(tmp_path / "torchvision.pth"))


def test_missing_weights_file_names_the_file_the_url_and_the_ways_out(tmp_path):
    with pytest.raises(errors.WeightsUnavailableError) as error:
        inception.load_inception(str(tmp_path / "nowhere.pth"))
    message = str(error.value)
    for needed in ("nowhere.pth does not exist", inception.FID_WEIGHTS_FILE, inception.FID_WEIGHTS_URL,
                   "--weights torchvision", "--weights random"):
        assert needed in message


def cli(tmp_path, *args, dims=64):
    return fid.run([*map(str, args), "--weights", "random", "--dims", str(dims), "--device", "cpu",
                     "--workers", "0", "--batch-size", "8", "--out-dir", str(tmp_path / "out")])


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    write_fixture("aptos", root / "aptos", per_class=3, size=(40, 56))          # 15 PNG images
    write_fixture("eurosat", root / "eurosat", per_class=1, size=(64, 64))      # 10 JPEG images
    write_fixture("cifar10", root / "cifar10", per_class=1)                     # 20 in-memory 32x32 images
    return root


def test_end_to_end_pool3_fid_of_two_fixture_datasets_records_what_was_measured(tmp_path, data_root):
    record = cli(tmp_path, "aptos", "eurosat", "--data-root", data_root, "--subset", 4, "--seed", 3, dims=2048)
    assert np.isfinite(record["fid"]) and record["fid"] > 0
    (path,) = (tmp_path / "out").glob("fid_aptos_vs_eurosat_*.json")
    saved = json.loads(path.read_text())
    assert saved["fid"] == pytest.approx(record["fid"], rel=1e-12)
    for key, available in (("a", 15), ("b", 10)):
        assert saved["inputs"][key]["num_available"] == available
        assert saved["inputs"][key]["num_used"] == saved["num_images"][key] == 4
        assert saved["inputs"][key]["seed"] == 3
    assert saved["made_with"]["weights"]["id"] == "random-fid-inception-seed0"
    assert saved["made_with"]["dims"] == 2048 and "bicubic" in saved["made_with"]["resize"]
    assert saved["versions"]["torch"] and "git_commit" in saved


def test_same_seed_gives_the_same_fid_and_subset(tmp_path, data_root):
    runs = [cli(tmp_path, "aptos", "cifar10", "--data-root", data_root, "--subset", 8, "--seed", 5) for _ in range(2)]
    assert runs[0]["fid"] == runs[1]["fid"] and runs[0]["fid"] > 0
    assert runs[0]["inputs"]["a"]["ids_sha256"] == runs[1]["inputs"]["a"]["ids_sha256"]
    assert [run["inputs"][key]["num_used"] for run in runs for key in "ab"] == [8, 8, 8, 8]


def test_subset_is_seeded_without_replacement_and_sorted():
    pool = np.arange(100, 200)
    first, again, other = (inputs.choose_subset(pool, 30, seed, False, "pool") for seed in (0, 0, 1))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert len(np.unique(first)) == 30 and np.all(np.diff(first) > 0) and np.isin(first, pool).all()
    assert np.array_equal(inputs.choose_subset(pool[::-1], 0, 0, False, "pool"), pool)   # 0 = all


def test_too_few_images_is_an_error_unless_allowed(tmp_path, data_root):
    with pytest.raises(errors.UsageError, match="has 10 images, fewer than --subset 12.*--allow-smaller"):
        cli(tmp_path, "eurosat", "aptos", "--data-root", data_root, "--subset", 12)
    record = cli(tmp_path, "eurosat", "aptos", "--data-root", data_root, "--subset", 12, "--allow-smaller")
    assert (record["inputs"]["a"]["num_used"], record["inputs"]["b"]["num_used"]) == (10, 12)


def write_images(folder, per_class):
    rng = np.random.default_rng(6)
    for k in range(6):
        image = rng.integers(0, 256, (30 + 7 * k, 50, 3), dtype=np.uint8)
        target = folder / (f"class{k % 2}" if per_class else "") / f"img{k}.{'png' if k % 3 else 'jpg'}"
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), image)
    (folder / "LOC_synset_mapping.txt").write_text("not an image\n")


def test_image_folders_flat_and_per_class_and_statistics_files_as_inputs(tmp_path):
    write_images(tmp_path / "flat", per_class=False)
    write_images(tmp_path / "nested", per_class=True)
    same = cli(tmp_path, tmp_path / "flat", tmp_path / "nested", "--subset", 0,
               "--save-stats", tmp_path / "flat.npz", "--save-stats-b", tmp_path / "nested.npz")
    assert abs(same["fid"]) < 1e-6   # the same six images, found at any depth
    assert same["inputs"]["a"]["num_used"] == same["inputs"]["b"]["num_used"] == 6
    assert same["inputs"]["a"]["skipped_non_images"] == 1
    write_images(tmp_path / "other", per_class=False)
    (tmp_path / "other" / "img0.jpg").unlink()
    folders = cli(tmp_path, tmp_path / "other", tmp_path / "nested", "--subset", 0)
    from_file = cli(tmp_path, tmp_path / "other", tmp_path / "nested.npz", "--subset", 0)
    assert from_file["fid"] == pytest.approx(folders["fid"], rel=1e-9) and folders["fid"] > 0
    assert from_file["inputs"]["b"]["kind"] == "stats" and from_file["num_images"]["b"] == 6
    assert abs(fid.run([str(tmp_path / "flat.npz"), str(tmp_path / "nested.npz"),
                         "--out-dir", str(tmp_path / "out")])["fid"]) < 1e-6


def test_statistics_made_with_other_weights_are_refused(tmp_path):
    write_images(tmp_path / "flat", per_class=False)
    rng = np.random.default_rng(7)
    mu, sigma = sample_stats(rng, 10, 64)
    save_stats(tmp_path / "other.npz", FeatureStats(mu, sigma, 10),
                   {"weights": {"id": "torchvision-inception_v3-IMAGENET1K_V1"}, "dims": 64, "resize": inception.RESIZE,
                    "normalisation": inception.NORMALISATION})
    with pytest.raises(errors.UsageError, match="made with weights 'torchvision-inception_v3-IMAGENET1K_V1'"):
        cli(tmp_path, tmp_path / "flat", tmp_path / "other.npz", "--subset", 0)


def test_all_datasets_writes_the_table_and_the_figure(tmp_path, data_root):
    write_images(tmp_path / "reference", per_class=True)
    cli(tmp_path, tmp_path / "reference", "--subset", 0, "--save-stats", tmp_path / "ref.npz")
    rows = fid.run(["--all-datasets", "--ref", str(tmp_path / "ref.npz"), "--data-root", str(data_root),
                     "--folder", f"imagenet-like={tmp_path / 'reference'}", "--subset", "6", "--weights", "random",
                     "--dims", "64", "--device", "cpu", "--workers", "0", "--out-dir", str(tmp_path / "out")])
    (stem,) = [path.with_suffix("") for path in (tmp_path / "out").glob("fid_table_ref_*.csv")]
    with open(stem.with_suffix(".csv"), newline="") as f:
        table = list(csv.DictReader(f))
    assert [(row["dataset"], row["group"], row["num_used"]) for row in table] == [
        ("aptos", "real-world", "6"), ("eurosat", "real-world", "6"), ("cifar10", "web-scraped", "6"),
        ("imagenet-like", "web-scraped", "6")]
    assert all(float(row["fid"]) > 0 for row in table[:3]) and len(rows) == 4
    assert abs(rows[3]["fid"]) < 1e-6   # the reference's own images
    assert stem.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    assert "| aptos | real-world | 15 | 6 |" in stem.with_suffix(".md").read_text()
    assert json.loads(stem.with_suffix(".json").read_text())["reference"]["num_images"] == 6


def test_torchvision_weights_offline_fail_with_the_ways_out():
    # Builds torchvision's InceptionV3 as it must be built for pretrained weights, then fails on the download.
    with pytest.raises(errors.WeightsUnavailableError, match="inception_v3_google"):
        inception.load_inception("torchvision", 2048)


def fid_records(tmp_path):
    return sorted((tmp_path / "out").glob("fid_*.json"))


def test_records_are_named_by_what_decides_the_number(tmp_path, data_root):
    first = cli(tmp_path, "aptos", "eurosat", "--data-root", data_root, "--subset", 4, "--seed", 0)
    second = cli(tmp_path, "aptos", "eurosat", "--data-root", data_root, "--subset", 4, "--seed", 1)
    assert len(fid_records(tmp_path)) == 2 and first["fid"] != second["fid"]  # --seed 1 kept --seed 0's record
    again = cli(tmp_path, "aptos", "eurosat", "--data-root", data_root, "--subset", 4, "--seed", 0)
    assert len(fid_records(tmp_path)) == 2 and again["fid"] == first["fid"]   # the same measurement: the same name
    cli(tmp_path, "aptos", "eurosat", "--data-root", data_root, "--subset", 4, "--seed", 0, dims=192)
    assert len(fid_records(tmp_path)) == 3                                    # other features: another record
    for parent in ("one", "two"):  # two folders both named train
        write_images(tmp_path / parent / "train", per_class=False)
    (tmp_path / "two" / "train" / "img0.jpg").unlink()
    cli(tmp_path, tmp_path / "one" / "train", "aptos", "--data-root", data_root, "--subset", 5)
    cli(tmp_path, tmp_path / "two" / "train", "aptos", "--data-root", data_root, "--subset", 5)
    names = [path.name for path in fid_records(tmp_path)]
    assert len(names) == 5 and any(n.startswith("fid_one_train_vs_aptos_") for n in names) \
        and any(n.startswith("fid_two_train_vs_aptos_") for n in names)


def test_a_set_against_itself_prints_zero_and_says_why(tmp_path, capsys):
    write_images(tmp_path / "Forest", per_class=False)
    record = cli(tmp_path, tmp_path / "Forest", tmp_path / "Forest", "--subset", 0)
    out = capsys.readouterr().out
    assert record["fid"] == 0.0 and "= 0.0000" in out and "-0.0000" not in out
    assert "A and B are the same images, so the FID is 0 by construction" in out


def test_seeds_of_a_and_b_and_disjoint_subsets_of_one_dataset(tmp_path, data_root):
    a = inputs.open_input("aptos", data_root=data_root, subset=6, seed=0)
    b = inputs.open_input("aptos", data_root=data_root, subset=6, seed=0, exclude=a)
    assert len(np.intersect1d(a.indices, b.indices)) == 0 and b.record["num_available"] == 15 - 6
    other_seed = inputs.open_input("aptos", data_root=data_root, subset=6, seed=1)
    assert not np.array_equal(a.indices, other_seed.indices)
    record = cli(tmp_path, "aptos", "aptos", "--data-root", data_root, "--subset", 6, "--disjoint")
    assert record["fid"] > 0 and record["disjoint"] and record["inputs"]["b"]["disjoint_from_a"]
    assert record["inputs"]["a"]["ids_sha256"] == a.record["ids_sha256"]
    assert record["inputs"]["b"]["ids_sha256"] == b.record["ids_sha256"]
    seeded = cli(tmp_path, "aptos", "aptos", "--data-root", data_root, "--subset", 6, "--seed-b", 1)
    assert seeded["seeds"] == {"a": 0, "b": 1}
    assert seeded["inputs"]["b"]["ids_sha256"] == other_seed.record["ids_sha256"]
    with pytest.raises(errors.UsageError, match="--disjoint draws B from the images A did not use"):
        cli(tmp_path, "aptos", "eurosat", "--data-root", data_root, "--subset", 4, "--disjoint")
    with pytest.raises(errors.UsageError, match="fewer than --subset 8"):  # 15 images hold no two disjoint 8s
        cli(tmp_path, "aptos", "aptos", "--data-root", data_root, "--subset", 8, "--disjoint")


@pytest.mark.parametrize("flags, refused", [
    (["--root", "datasets/aptos"], "--root does not apply to --all-datasets"),
    (["--seed-a", "1", "--seed-b", "2"], "--seed-a, --seed-b do not apply to --all-datasets"),
    (["--disjoint"], "--disjoint does not apply to --all-datasets"),
    (["--save-stats", "a.npz", "--save-stats-b", "b.npz"], "--save-stats, --save-stats-b do not apply"),
])
def test_flags_all_datasets_does_not_read_are_refused_not_ignored(tmp_path, flags, refused):
    with pytest.raises(errors.UsageError, match=f"^{refused}.*leave (it|them) out"):
        fid.run(["--all-datasets", "--ref", str(tmp_path / "ref.npz"), *flags, "--out-dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_table_flags_are_refused_for_a_pair():
    with pytest.raises(errors.UsageError, match="^--ref, --folder do not apply without --all-datasets"):
        fid.run(["a.npz", "b.npz", "--ref", "ref.npz", "--folder", "web=photos"])


def test_help_shows_each_default_once():
    from test_report import assert_each_default_shown_once
    assert_each_default_shown_once(fid.build_parser())


def test_expected_errors_are_one_line_without_a_traceback(tmp_path):
    import subprocess
    import sys
    write_images(tmp_path / "flat", per_class=False)
    missing = subprocess.run([sys.executable, fid.__file__, str(tmp_path / "flat"), str(tmp_path / "flat"),
                              "--subset", "0", "--weights", str(tmp_path / "nowhere.pth"), "--workers", "0"],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "fid.py: error: weights file" in missing.stderr and "nowhere.pth does not exist" in missing.stderr
    assert "--weights random" in missing.stderr  # the ways out
    usage = subprocess.run([sys.executable, fid.__file__, "a.npz", "b.npz"], capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
    assert usage.returncode == 1 and usage.stderr.strip() == "fid.py: error: statistics file a.npz does not exist"


def test_a_broken_reference_file_is_one_error_line_before_any_features(tmp_path, data_root):
    import subprocess
    import sys
    reference = broken_stats_files(tmp_path)["sigma has a negative variance: -1 on its diagonal at dimension 3"]
    table = subprocess.run([sys.executable, fid.__file__, "--all-datasets", "--ref", str(reference), "--data-root",
                            str(data_root), "--subset", "6", "--weights", "random", "--dims", "64", "--workers", "0",
                            "--device", "cpu", "--out-dir", str(tmp_path / "out")],
                           capture_output=True, text=True, timeout=300)
    assert table.returncode == 1 and "Traceback" not in table.stderr and "features" not in table.stderr
    assert table.stderr.strip() == (f"fid.py: error: statistics file {reference}: sigma has a negative variance: -1 on "
                                    f"its diagonal at dimension 3, so it is no covariance; remake it from the images "
                                    f"with `python fid.py IMAGES --save-stats {reference}`")
    good = tmp_path / "good.npz"
    np.savez(good, mu=np.zeros(64), sigma=np.eye(64))
    with pytest.raises(errors.DataError, match=f"statistics file {reference}: sigma has a negative variance"):
        fid.run([str(good), str(reference), "--out-dir", str(tmp_path / "out")])


def test_an_unreadable_image_is_named_from_a_dataloader_worker(tmp_path):
    write_images(tmp_path / "flat", per_class=False)
    broken = tmp_path / "flat" / "img0.jpg"
    broken.write_bytes(broken.read_bytes()[:40])  # a truncated JPEG: its header passes, decoding fails
    with pytest.raises(errors.DataError, match=f"{broken}.*FID needs every image it draws") as error:
        fid.run([str(tmp_path / "flat"), str(tmp_path / "flat"), "--subset", "0", "--weights", "random", "--dims",
                 "64", "--device", "cpu", "--workers", "1", "--batch-size", "8", "--out-dir", str(tmp_path / "out")])
    assert "Traceback" not in str(error.value)
