"""Cold start: import time of each Lambda function's entry, against its third-party imports alone.

For every function in functions/, a fresh Python process imports the entry as Lambda does (buffered:
`app.py`, whose import builds the Mangum handler; streaming: `main.py` plus the `app()` factory
uvicorn calls before the adapter's readiness check passes) with the deployed stack's environment
(DynamoDB store, no network needed to build the app). Another fresh process imports only the
third-party modules the first one ended up with. The ratio is what the gateway's own code
adds on top of its dependencies. Best of several runs (the least disturbed by other load), entry and
dependency runs alternating; wall and CPU time both reported. Prints one JSON object.

Target: entry ≤ 120% of its third-party imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 11
TARGET = 1.20

_ENTRY = r"""
import json, sys, time
t, c = time.perf_counter(), time.process_time()
{pre}
import {module} as entry
{build}
elapsed, cpu = time.perf_counter() - t, time.process_time() - c
own = ("llm_gateway", "main", "app", "entry")
third = sorted({{name.split(".")[0] for name in sys.modules}} - set(sys.stdlib_module_names) - set(own)
               - {{"_distutils_hack", "__main__"}})
third = [n for n in third if not n.startswith("_")]
# every third-party module the entry ended up with, in import order (a package's top level alone
# can be far lighter than the submodules actually used, e.g. botocore vs botocore.session)
modules = [name for name in list(sys.modules) if name.split(".")[0] in third]
print(json.dumps({{"seconds": elapsed, "cpu": cpu, "third_party": third, "modules": modules}}))
"""

_DEPS = r"""
import importlib, json, time
names = {names!r}
t, c = time.perf_counter(), time.process_time()
for name in names:
    try:
        importlib.import_module(name)
    except Exception:
        pass
imported, cpu = time.perf_counter() - t, time.process_time() - c
if {client!r}:
    importlib.import_module("botocore.session").Session().create_client("dynamodb")
print(json.dumps({{"seconds": imported, "cpu": cpu, "with_client": time.perf_counter() - t}}))
"""


# Both sides import from bytecode, as any normal Python start does: a shell with
# PYTHONDONTWRITEBYTECODE set would otherwise leave the gateway's own (editable) modules compiled from
# source on every run while the installed dependencies come with their .pyc, which measures the
# compiler rather than the imports. A private cache prefix (PYTHONPYCACHEPREFIX) keeps the checkout clean.


def _layer_package(site: Path) -> str:
    """The llm_gateway package in `site` as the layer build leaves it: with the trimmed AWS endpoint table."""
    import shutil

    import botocore

    shutil.copytree(ROOT / "layers" / "gateway" / "llm_gateway", site / "llm_gateway",
                    ignore=shutil.ignore_patterns("__pycache__", "tokenizers"))
    data = site / "botocore" / "data"
    data.mkdir(parents=True)
    (data / "endpoints.json").symlink_to(Path(botocore.__file__).parent / "data" / "endpoints.json")
    # the layer Makefile's AWS_SERVICES, which tests/test_awsclients.py holds equal to this tuple
    sys.path.insert(0, str(ROOT / "layers" / "gateway"))
    from llm_gateway.awsclients import SERVICES

    subprocess.run([sys.executable, str(ROOT / "layers" / "gateway" / "trim_endpoints.py"), str(site), *SERVICES],
                   check=True)
    shutil.rmtree(site / "botocore")  # only the table was needed; botocore itself comes from the venv
    return str(site)


def _env(layer: str, pycache: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {
        **env,
        "PYTHONPYCACHEPREFIX": pycache,
        "PYTHONPATH": layer,
        "GATEWAY_STORE_URL": "dynamodb://bench",
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "TIKTOKEN_CACHE_DIR": str(ROOT / "layers" / "tiktoken"),
    }


def _run(code: str, cwd: Path, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(function_dir: Path, env: dict[str, str]) -> dict:
    streaming = (function_dir / "run.sh").exists()
    module = "main" if streaming else "app"
    build = "entry.app()" if streaming else ""
    # streaming: `python -m uvicorn main:app --factory` imports uvicorn, then the module, then calls it
    entry_code = _ENTRY.format(pre="import uvicorn" if streaming else "", module=module, build=build)
    first = _run(entry_code, function_dir, env)  # fills the bytecode cache; not counted
    third, modules = first["third_party"], first["modules"]
    deps_code = _DEPS.format(names=modules, client=True)
    _run(deps_code, ROOT, env)
    # Entry and dependencies alternate, so a burst of load on this shared machine hits both sides.
    entry_runs, deps_runs, client_runs, entry_cpu, deps_cpu = [], [], [], [], []
    for _ in range(RUNS):
        result = _run(entry_code, function_dir, env)
        entry_runs.append(result["seconds"])
        entry_cpu.append(result["cpu"])
        result = _run(deps_code, ROOT, env)
        deps_runs.append(result["seconds"])
        deps_cpu.append(result["cpu"])
        client_runs.append(result["with_client"])
    entry_ms, deps_ms = min(entry_runs) * 1000, min(deps_runs) * 1000
    client_ms = min(client_runs) * 1000
    return {
        "kind": "streaming (LWA + uvicorn)" if streaming else "buffered (Mangum)",
        "entry_ms": round(entry_ms, 1),
        "third_party_ms": round(deps_ms, 1),
        "ratio": round(entry_ms / deps_ms, 3),
        # the same comparison in CPU time (user + system), which other load on the machine disturbs less
        "cpu_ratio": round(min(entry_cpu) / min(deps_cpu), 3),
        "within_target": entry_ms / deps_ms <= TARGET,
        # the same imports plus a stock botocore DynamoDB client, like the one every function builds at init
        # (botocore loading its service model): the part of the entry that is not the gateway's code
        "third_party_with_client_ms": round(client_ms, 1),
        "ratio_to_third_party_with_client": round(entry_ms / client_ms, 3),
        "third_party": third,
    }


def main() -> None:
    functions = sorted(p for p in (ROOT / "functions").iterdir() if p.is_dir())
    with tempfile.TemporaryDirectory(prefix="llmgw-layer-") as site, \
            tempfile.TemporaryDirectory(prefix="llmgw-pycache-") as pycache:
        env = _env(_layer_package(Path(site)), pycache)
        results = {p.name: measure(p, env) for p in functions}
    print(json.dumps({"target_ratio": TARGET, "runs": RUNS, "python": sys.version.split()[0],
                      "functions": results}, indent=2))


if __name__ == "__main__":
    main()
