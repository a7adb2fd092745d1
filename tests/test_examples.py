"""Every example command a user reads: README's code blocks, every script's usage lines (its docstring, which its
--help prints) and every study script's header, taken as printed (placeholders such as runs/<run_id> filled with a
fixture's names). Each is accepted by the script it names: its options parsed by the script's own parser, train.py's
resolved into runs, grid.py plan's planned on fixtures. Those that can run on a CPU with nothing to download
(RUN_HERE) also run; the rest need GPUs, pretrained weights, the network, ImageNet or the real datasets, and the
suite's other tests run their code paths on fixtures.
"""
from __future__ import annotations

import ast
import glob
import json
import re
import shlex
import shutil
import subprocess

import pytest

import analyze
import cache
import evaluate
import fid
import grid
import models
import splits
import train
from data import download
from data.synthetic import write_fixture
from evaluation.options import EvalOptions
from nets import registry
from training.config import run_config
from training.options import TrainOptions

from conftest import REPO
from conftest import train as train_py

SCRIPTS = {"train.py": train, "evaluate.py": evaluate, "analyze.py": analyze, "splits.py": splits, "fid.py": fid,
           "models.py": models, "grid.py": grid, "cache.py": cache, "data.download": download}
COMMAND = re.compile(r"^(?:[A-Z_]+=(?:\"[^\"]*\"|\S+)\s+)*(?:python3? |accelerate launch |bash studies/)")

# The examples a CPU runs here on fixtures, in this order (later ones read what earlier ones wrote). Every other
# example is still parsed and planned by test_every_example_is_accepted_as_printed.
RUN_HERE = [
    "python models.py",
    "python models.py --json",
    "python models.py --models-file models.json",
    "python splits.py aptos --root datasets/aptos",
    "python splits.py cct20 --root datasets/cct20",
    "python splits.py digits --method stratified --seed 1",
    "python splits.py hpa --root datasets/hpa --from split.stratified.small.0.csv",
    "python grid.py estimate --paper --gpus 8",
    "python grid.py plan --datasets aptos hpa --models testbed",
    "python grid.py status",
    "python evaluate.py runs/<run_id>",
    "python evaluate.py runs/<run_id> --tta flips",
    "python evaluate.py --from-predictions runs/<run_id>",
    "python analyze.py runs/",
    "python analyze.py runs/*.json",
    "python analyze.py runs/ --export testbed.json",
    "python analyze.py runs/ --export results.json",
    "python cache.py cassava --dry-run",
    "python cache.py eurosat --img-size 224 --splits train",
    "python cache.py melanoma --verify-images",
]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    lines = [line for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S) for line in block.splitlines()]
    return joined(lines + [line for line in text.splitlines() if line.startswith("    ")])


def usage_commands() -> list[str]:
    lines = []
    for name in SCRIPTS:
        path = REPO / (name if name.endswith(".py") else name.replace(".", "/") + ".py")
        lines += ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))).splitlines()
    for script in sorted((REPO / "studies").glob("*.sh")):
        lines += [line.lstrip("#") for line in script.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    return joined(lines)


def joined(lines: list[str]) -> list[str]:
    """The example commands among `lines`: comments dropped, continued lines joined."""
    commands, current = [], ""
    for line in lines:
        line = re.split(r"\s{2,}#|\s#\s", line)[0].rstrip()
        current = f"{current} {line.strip()}" if current else line.strip()
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        if COMMAND.match(current) and "venv" not in current:
            commands.append(current)
        current = ""
    return commands


EXAMPLES = sorted(set(readme_commands()) | set(usage_commands()))


def test_the_examples_are_found_and_those_that_run_here_are_among_them():
    assert len(EXAMPLES) > 60
    assert set(RUN_HERE) <= set(EXAMPLES), set(RUN_HERE) - set(EXAMPLES)


def invocations(command: str) -> list[list[str]]:
    """The command's script invocations: `a && b` apart, redirections, sbatch and environment settings left out."""
    found = []
    for part in command.split("&&"):
        words = shlex.split(part.split(" > ")[0])
        while words and re.match(r"^[A-Z_]+=", words[0]):
            words = words[1:]
        if words and words[0] != "sbatch":
            found.append(words)
    return found


def script_and_arguments(words: list[str], run_id: str) -> tuple[str, list[str]]:
    """(script, its arguments) of one invocation: settings, launcher and launcher options left out, placeholders
    filled, globs expanded as a shell does."""
    if words[:2] == ["accelerate", "launch"]:
        words = words[next(i for i, w in enumerate(words) if w.endswith(".py")):]
    elif words[0].startswith("python"):
        words = ["data.download", *words[3:]] if words[1] == "-m" else words[1:]
    filled = []
    for word in words[1:]:
        word = re.sub(r"<run_id>|<a>|<b>|<c>", run_id, word)
        filled += (sorted(glob.glob(word)) or [word]) if "*" in word else [word]
    return words[0], filled


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A study folder as the examples assume: datasets/<name> of every dataset, HPA's split imported as README says,
    a models file naming the examples' own models, one finished APTOS run (a dataset with flips, so --tta flips
    applies; its weights kept)."""
    work = tmp_path_factory.mktemp("examples")
    for name in ("aptos", "cct20", "hpa", "melanoma", "cassava", "eurosat", "cifar10", "dr2015"):
        write_fixture(name, work / "datasets" / name, per_class=8)  # the paper's 20% of 8 is one
    shutil.copy(work / "datasets" / "hpa" / "split.stratified.small.0.csv", work)
    assert splits.main(["hpa", "--root", str(work / "datasets" / "hpa"), "--from",
                        str(work / "split.stratified.small.0.csv"), "--out",
                        str(work / "splits" / "hpa-from-split.stratified.small.0.csv")]) == 0
    (work / "models.json").write_text(json.dumps({"models": [
        {"name": name, "library": "timm", "constructor": "convnext_nano", "weights_tag": "in12k_ft_in1k",
         "input_size": 224, "imagenet_top1": 80.0, "top1_source": "a test's"} for name in ("my_convnext", "mine")]}))
    train_py(["--dataset", "aptos", "--root", "datasets/aptos", "--model", "resnet18", "--weights", "random",
              "--epochs", "1", "--img-size", "32", "--batch-size", "16", "--workers", "0"], work)
    (run,) = sorted((work / "runs").glob("*.json"))
    yield work, run.stem
    registry.set_added([])


@pytest.mark.parametrize("command", EXAMPLES)
def test_every_example_is_accepted_as_printed(command, folder, monkeypatch):
    work, run_id = folder
    monkeypatch.chdir(work)
    for words in invocations(command):
        if words[0] == "bash":
            check_study(words)
            continue
        script, args = script_and_arguments(words, run_id)
        if script == "train.py":
            run_config(TrainOptions.from_args(train.build_parser().parse_args(args)))
        elif script == "grid.py":
            parsed, passed_on = grid.build_parser().parse_known_args(args)
            if parsed.command == "plan":  # planned: train.py's own options checked and every run resolved
                assert grid.main([*args, "--manifest", "planned.jsonl"]) == 0
            else:
                assert not passed_on, passed_on
        elif script == "evaluate.py":
            EvalOptions.from_args(evaluate.build_parser().parse_args(args))
        else:
            SCRIPTS[script].build_parser().parse_args(args)
    registry.set_added([])


def check_study(words: list[str]) -> None:
    """A study script's example: the script parses (bash -n) and its grid.py run options are grid.py's."""
    script = next(REPO / w for w in words if w.startswith("studies/"))
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    after = words[words.index(str(script.relative_to(REPO))) + 1:]
    if script.name == "fid_table.sh":  # its argument is ImageNet's folder
        return
    if script.name == "benchmark_model.sh":  # its own options, then "--" and grid.py's
        run_options = after[after.index("--") + 1:] if "--" in after else []
        grid.build_parser().parse_args(["slurm" if "--slurm" in after else "run", *run_options])
        return
    grid.build_parser().parse_args(["run", *after])  # the grid studies' arguments go to grid.py run


def test_the_examples_that_can_run_here_run(folder, monkeypatch, capsys):
    work, run_id = folder
    monkeypatch.chdir(work)
    for command in RUN_HERE:
        for words in invocations(command):
            script, args = script_and_arguments(words, run_id)
            status = SCRIPTS[script].main(args)
            assert status in (0, None), (command, capsys.readouterr())
    registry.set_added([])
    assert (work / "grid.jsonl").is_file() and (work / "testbed.json").is_file()
