"""Tests for cache.py's command line: which sizes and splits it prepares (the sizes train.py asks for), its
report, its help text and its errors."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cache
import imagecache
from common import errors
from data import REGISTRY, open_dataset, splits
from nets import registry
from training import options
from training.config import run_config

REPO = Path(__file__).resolve().parent.parent


def test_command_line_prepares_train_and_eval_splits_and_reports_its_rate(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default split file goes to ./splits, as train.py writes it
    assert cache.main(["digits", "--img-size", "16", "--workers", "0", "--cache-dir", "c"]) == 0
    out = capsys.readouterr().out
    assert "digits train (train 16)" in out and "digits val (eval 16)" in out
    assert re.search(r"built \d+ images in [\d.]+ s: \d+ images/s \(in this process\)", out)
    indices, _, _ = splits.resolve_split(open_dataset("digits"))
    assert imagecache.open_cache(open_dataset("digits"), indices["val"], imagecache.cache_settings(16, "eval"),
                            "c")(indices["val"][0]).shape == (16, 16, 3)
    assert cache.main(["digits", "--img-size", "16", "--workers", "0", "--cache-dir", "c"]) == 0
    assert "every cache was already built" in capsys.readouterr().out
    with pytest.raises(errors.UsageError, match="--splits: .* has no split nosuch"):
        cache.main(["digits", "--splits", "nosuch", "--workers", "0", "--cache-dir", "c"])
    with pytest.raises(registry.UnknownModelError, match="resnet19"):
        cache.main(["digits", "--model", "resnet19", "--dry-run"])


@pytest.mark.parametrize("dataset", sorted(REGISTRY))
def test_the_size_cache_py_prepares_for_a_model_is_the_size_train_py_asks_for(dataset):
    parser = cache.build_parser()
    for model in registry.REGISTRY:
        args = parser.parse_args([dataset, "--model", model])
        trains_at = run_config(options.parse(["--dataset", dataset, "--model", model]))
        evaluates_at = registry.input_size(model, dataset, None)  # evaluate.py --model; runs: the record's, train.py's
        assert imagecache.input_sizes(args.dataset, args.model, args.models, args.img_size) == \
            [registry.input_size(model, dataset)] == [trains_at.img_size] == [evaluates_at]
        args = parser.parse_args([dataset, "--model", model, "--img-size", "300"])
        if registry.REGISTRY[model].fixed_input_size:
            with pytest.raises(errors.UsageError, match="only accepts"):
                imagecache.input_sizes(args.dataset, args.model, args.models, args.img_size)
        else:
            assert imagecache.input_sizes(args.dataset, args.model, args.models, args.img_size) == [300]


def test_without_a_model_the_testbed_sizes_are_prepared():
    testbed = [name for name, entry in registry.REGISTRY.items() if entry.group == "testbed"]
    assert len(testbed) == 19
    assert imagecache.input_sizes("aptos") == [224, 256]  # DeiT at 224, the rest at the paper's 256
    assert imagecache.input_sizes("eurosat") == [224]
    every = sorted({registry.input_size(m, "aptos") for m in registry.REGISTRY})
    assert imagecache.input_sizes("aptos", group="all") == every
    assert imagecache.input_sizes("aptos", img_sizes=[320, 288, 320]) == [288, 320]


def test_a_cache_prepared_for_models_is_the_one_train_py_reads(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["digits", "--model", "deit_tiny", "resnet18", "--splits", "val", "--workers", "0", "--cache-dir", "c"]
    assert cache.main([*args, "--dry-run"]) == 0
    samples = open_dataset("digits")
    val = splits.resolve_split(samples)[0]["val"]
    assert capsys.readouterr().out.splitlines() == [f"digits val (eval 32): {len(val)} images",
                                                   f"digits val (eval 224): {len(val)} images"]
    assert not (tmp_path / "c").exists()
    assert cache.main(args) == 0
    for model in ("deit_tiny", "resnet18"):
        reader = imagecache.reader_for(samples, val, registry.input_size(model, "digits"), "eval", "auto", "c")
        assert reader is not None and reader.info["settings"]["img_size"] == registry.input_size(model, "digits")


def test_a_models_files_group_is_prepared_and_an_unknown_group_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models.json").write_text(json.dumps({"models": [{
        "name": "my_net", "library": "torchvision", "constructor": "resnet18", "input_size": 48,
        "imagenet_top1": 70.0, "top1_source": "a test", "group": "mine"}]}))
    try:
        assert cache.main(["digits", "--models", "mine", "--models-file", "models.json", "--splits", "val",
                           "--workers", "0", "--dry-run"]) == 0
        assert capsys.readouterr().out.startswith(f"digits val (eval {registry.input_size('my_net', 'digits')}):")
        with pytest.raises(errors.UsageError, match="--models theirs: no such group.*all, testbed.*, mine"):
            cache.main(["digits", "--models", "theirs", "--models-file", "models.json", "--dry-run"])
    finally:
        registry.set_added([])


def test_help_shows_each_default_once():
    text = cache.build_parser().format_help()
    assert "(default: None)" not in text
    blocks = re.split(r"\n  (?=-)", text.split("options:", 1)[1])
    assert len(blocks) > 10
    for block in blocks:
        assert block.count("(default:") <= 1, block


def test_expected_errors_are_one_line_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "cache.py"), "digits", "--splits", "nosuch",
                             "--workers", "0", "--cache-dir", str(tmp_path / "c")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("cache.py: error: --splits:") and "Traceback" not in result.stderr


def test_the_build_benchmark_runs_and_reports_both_rates(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "cache_build.py"), "--images", "10",
                             "--width", "64", "--height", "48", "--workers", "2", "--repeat", "1",
                             "--data", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "machine: CPU" in result.stdout and "--workers 0 " in result.stdout and "--workers 2 " in result.stdout
    assert re.search(r"ratio --workers 2 / --workers 0: build rate [\d.]+x, whole command [\d.]+x", result.stdout)


def test_cache_py_prepares_the_images_of_a_final_model_with_extra_training_data(tmp_path, monkeypatch):
    """APTOS + dr2015 on all labelled data (the Kaggle recipe): train.py --cache auto finds what cache.py built."""
    from data.synthetic import write_fixture

    from conftest import train as run_train
    aptos = write_fixture("aptos", tmp_path / "aptos", per_class=6)
    dr2015 = write_fixture("dr2015", tmp_path / "dr2015", per_class=3)
    data = ["--root", str(aptos), "--extra-train", "dr2015", "--extra-root", str(dr2015), "--train-on", "all"]
    monkeypatch.chdir(tmp_path)
    assert cache.main(["aptos", *data, "--img-size", "16", "--workers", "0", "--cache-dir", "c"]) == 0
    run_train(["--dataset", "aptos", *data, "--model", "resnet18", "--weights", "random", "--epochs", "1",
               "--batch-size", "8", "--img-size", "16", "--workers", "0", "--cache-dir", "c", "--out", "runs"],
              tmp_path)
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")]
    assert record["cache"]["train"] is not None and record["cache"]["train"]["images"] == 30 + 15


def test_a_problem_in_the_split_file_is_a_data_error_as_in_train_py(tmp_path):
    bad = tmp_path / "split.csv"
    bad.write_text("id,split\n0,nowhere\n")
    result = subprocess.run([sys.executable, str(REPO / "cache.py"), "digits", "--split-file", str(bad),
                             "--workers", "0", "--cache-dir", str(tmp_path / "c")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"cache.py: error: split file {bad}")


def test_a_jpeg_cache_keeps_its_format_when_cache_py_runs_again_without_format(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["digits", "--splits", "val", "--img-size", "32", "--workers", "0", "--cache-dir", "c"]
    assert cache.main([*args, "--format", "jpeg"]) == 0
    capsys.readouterr()
    assert cache.main(args) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "every cache was already built"
    (manifest,) = (tmp_path / "c").rglob("manifest.json")
    assert json.loads(manifest.read_text())["format"] == "jpeg"
