"""Build step of the gateway layer: botocore's endpoint table cut down to the services the gateway calls.

Every botocore client reads `botocore/data/endpoints.json` (1.2 MB, over 300 services in every
partition) when it is created, which is about a third of a Lambda function's client-creation time.
The gateway only ever creates DynamoDB, SSM and Secrets Manager clients, so the layer ships a copy
holding just those services, with every partition's own fields unchanged, where
`llm_gateway.awsclients` looks first. Generated from the layer's own botocore at build time, so it
always matches the botocore it ships with. Standard library only: the build machine's Python runs
it, not the layer's.

    python trim_endpoints.py SITE_PACKAGES SERVICE...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DATA_DIR = "llm_gateway/awsdata"  # relative to site-packages; llm_gateway.awsclients reads it


def trim(endpoints: dict, services: list[str]) -> dict:
    out = dict(endpoints)
    out["partitions"] = [
        {**partition, "services": {n: s for n, s in partition["services"].items() if n in services}}
        for partition in endpoints["partitions"]
    ]
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    site, services = Path(argv[0]), argv[1:]
    source = json.loads((site / "botocore" / "data" / "endpoints.json").read_text("utf-8"))
    target = site / DATA_DIR
    target.mkdir(parents=True, exist_ok=True)
    (target / "endpoints.json").write_text(json.dumps(trim(source, services), separators=(",", ":")), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
