"""List the models (the paper's testbed, the ablation's ResNet-50 weights, the CLIP towers, later architectures, a
models file's) and fetch their pretrained weights ahead of the runs.

    python models.py                                  # the registry as a table
    python models.py --json                           # the same as JSON, with the source of every ImageNet top-1
    python models.py --models-file models.json        # your models too, each field checked
    python models.py --download testbed               # the testbed's weights into the libraries' caches
    python models.py --download mobilenet_v2 convnext_small.fb_in1k   # any model names or groups

The registry itself is nets/registry.py (no torch needed to read it); nets/networks.py builds the models. --download
puts the weights where train.py looks for them: torchvision's under $TORCH_HOME/hub/checkpoints, timm's in the
Hugging Face cache under $HF_HOME/hub. On a cluster whose compute nodes have no internet, run it on the login node
with the TORCH_HOME and HF_HOME the compute nodes see (a shared file system); runs there load them without the
network.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from common import cli, errors
from common.errors import WeightsUnavailableError
from nets import models_file, registry


@dataclass(frozen=True)
class ModelsOptions:
    json: bool = False
    models_file: str | None = None
    download: tuple[str, ...] | None = None


def build_parser():
    parser = cli.parser(__doc__)
    parser.add_argument("--json", action="store_true", help="print the registry as JSON, with the source of every "
                                                            "ImageNet top-1, instead of a table")
    parser.add_argument("--models-file", default=None,
                        help="JSON file of your own models (README, 'Benchmark your model'): checked, and listed "
                             "after the registry's")
    parser.add_argument("--download", nargs="+", default=None, metavar="GROUP|NAME",
                        help="fetch these models' pretrained weights into the libraries' caches (groups: "
                             f"{', '.join(dict.fromkeys(e.group for e in registry.REGISTRY.values()))}, all)")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = cli.typed(ModelsOptions, build_parser().parse_args(argv))
    added = models_file.use(options.models_file)
    if options.download is not None:
        return download(options.download)
    if options.json:
        print(json.dumps([asdict(e) for e in [*registry.REGISTRY.values(), *added]], indent=2))
    else:
        print(registry.registry_table([*registry.REGISTRY.values(), *added]))
    return 0


def download(names: tuple[str, ...]) -> int:
    """Fetch the weights of every model the names and groups give; go on past a failure and name each at the end."""
    entries = {entry.name: entry for given in names
               for entry in map(registry.get_entry, registry.group_models(given) or [given])}  # unknown names: now
    from nets import weights  # torch, timm: only to download
    failed = []
    for entry in entries.values():
        try:
            print(weights.download(entry), flush=True)
        except WeightsUnavailableError as error:
            errors.report("models.py", error)
            failed.append(entry.name)
    if failed:
        raise errors.DataError(f"the weights of {len(failed)} of {len(entries)} models were not fetched "
                               f"({', '.join(failed)}); each one's reason is above")
    return 0


if __name__ == "__main__":
    errors.run_main("models.py", main)
