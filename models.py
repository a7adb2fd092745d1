"""List the model registry: the paper's testbed, the ablation's ResNet-50 weights, the CLIP towers, later architectures.

    python models.py            # the registry as a table
    python models.py --json     # the same as JSON, with the source of every ImageNet top-1

The registry itself is nets/registry.py (no torch needed to read it); nets/networks.py builds the models.
"""
from __future__ import annotations

import json
from dataclasses import asdict

from common import cli, errors
from nets import registry


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the registry as JSON, with the source of every "
                                                            "ImageNet top-1, instead of a table")
    args = parser.parse_args(argv)
    if args.json:
        print(json.dumps([asdict(e) for e in registry.REGISTRY.values()], indent=2))
    else:
        print(registry.registry_table())
    return 0


if __name__ == "__main__":
    errors.run_main("models.py", main)
