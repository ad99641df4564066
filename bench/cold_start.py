"""Cold start from what Lambda unpacks: each function's entry import against its third-party imports.

What is measured is the deployment artefact itself, not the checkout:
1. the build: `sam build`'s `.aws-sam/build` when it holds the layers (`--artifacts DIR` for another
   one), else a fresh build by the same Makefiles (`--build` forces that);
2. the zip: every artefact zipped as `sam package` / `sam deploy` zip it, by the SAM CLI's own
   function when `.venv-sam` has it, else by the same steps: each entry dated 1980-01-01, which is why
   timestamp-checked bytecode never matches its source on Lambda;
3. the unpacking: layers into one `opt` folder and each function into its own `task` folder, files
   dated as in the zip;
4. the run: a fresh Python 3.13 process (the runtime's version; the bytecode is 3.13's) that cannot
   write bytecode (PYTHONDONTWRITEBYTECODE: /opt and /var/task are read-only on Lambda), with
   `opt/python` on its path and the deployed stack's environment (DynamoDB store; building the app
   needs no network). A buffered entry is `app.py`, whose import builds the Mangum handler; a
   streaming one is uvicorn, then `main.py`, then the `app()` factory uvicorn calls before the
   adapter's readiness check passes.

Another fresh process imports only the third-party modules the entry ended up with, from the same
unpacked layer. The ratio is what the gateway's own code adds on top of its dependencies. Both report
how many modules they compiled from source (0 when the shipped bytecode is used). Best of several
runs, entry and dependency runs alternating; wall and CPU time both reported. Prints one JSON object.

The layer's extension modules are built for Lambda (aarch64). On another machine they are replaced by
the same versions' wheels for this machine, extension files only: every Python file and its bytecode
stays the one from the zip (`native_stand_ins` in the output lists them).

Target: entry ≤ 120% of its third-party imports.

    python bench/cold_start.py [--build | --artifacts DIR] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 11
TARGET = 1.20
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
WHEEL_CACHE = ROOT / ".aws-sam" / "bench-native-wheels"

# Counts modules compiled from source: SourceLoader.get_code calls source_to_code only when no
# usable bytecode was found.
_COUNT_COMPILES = r"""
import importlib._bootstrap_external as _be
_compiled = []
_source_to_code = _be.SourceLoader.source_to_code
def _counting(self, data, path, *args, **kwargs):
    _compiled.append(path)
    return _source_to_code(self, data, path, *args, **kwargs)
_be.SourceLoader.source_to_code = _counting
"""

_ENTRY = _COUNT_COMPILES + r"""
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
layer = [p for p in _compiled if p.startswith({opt!r})]
print(json.dumps({{"seconds": elapsed, "cpu": cpu, "third_party": third, "modules": modules,
                  "compiled": len(_compiled), "layer_compiled": len(layer),
                  "gateway_compiled": sum("/llm_gateway/" in p for p in layer)}}))
"""

_DEPS = _COUNT_COMPILES + r"""
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
print(json.dumps({{"seconds": imported, "cpu": cpu, "with_client": time.perf_counter() - t,
                  "compiled": len(_compiled)}}))
"""


# --- the Python that runs the measured imports -------------------------------------------------

def python313() -> str:
    """The interpreter the layer's bytecode is for: $PYTHON313, else the first that really runs 3.13."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [os.environ.get("PYTHON313", ""), "python3.13",
                  *sorted(str(p) for p in pyenv.glob("versions/3.13*/bin/python3.13")),
                  "/usr/local/bin/python3.13", "/usr/bin/python3.13", sys.executable]
    for candidate in filter(None, candidates):
        try:
            out = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 13))"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.stdout.strip() == "True":
            return candidate
    raise SystemExit("cold_start: no Python 3.13 found (set PYTHON313): the layer's bytecode is 3.13's")


# --- 1. the build ------------------------------------------------------------------------------

def _functions(build: Path) -> dict[str, Path]:
    """family -> built function folder (`<Family>Function`, as the template names them)."""
    out = {}
    for source in sorted(p for p in (ROOT / "functions").iterdir() if p.is_dir()):
        built = build / f"{source.name.capitalize()}Function"
        if not built.is_dir():
            raise SystemExit(f"cold_start: {built} is missing; run `sam build` or pass --build")
        out[source.name] = built
    return out


def fresh_build(into: Path) -> Path:
    """What `sam build` does for this template, without the SAM CLI: the layer Makefiles, and each
    function's folder copied as is (they have no requirements of their own)."""
    for layer in ("GatewayLayer", "TiktokenLayer"):
        artifacts = into / layer
        artifacts.mkdir(parents=True)
        makefile = ROOT / "layers" / layer.removesuffix("Layer").lower() / "Makefile"
        subprocess.run(["make", "-s", "-f", str(makefile), f"build-{layer}", f"ARTIFACTS_DIR={artifacts}"],
                       check=True, cwd=makefile.parent)
    for source in (ROOT / "functions").iterdir():
        if source.is_dir():
            shutil.copytree(source, into / f"{source.name.capitalize()}Function",
                            ignore=shutil.ignore_patterns("__pycache__"))
    return into


# --- 2. the zip, 3. the unpacking --------------------------------------------------------------

def zip_like_sam(source: Path, zip_base: Path) -> str:
    """Zip `source` into `zip_base`.zip as `sam package` does; returns which zipper did it."""
    if SAM_PYTHON.exists():
        code = ("import sys; from samcli.lib.package.utils import make_zip_with_lambda_permissions as z; "
                "from samcli import __version__ as v; z(sys.argv[1], sys.argv[2]); print(v)")
        out = subprocess.run([str(SAM_PYTHON), "-c", code, str(zip_base), str(source)],
                             capture_output=True, text=True)
        if out.returncode == 0:
            return f"samcli {out.stdout.strip()}"
    # the same steps as samcli.lib.package.utils.make_zip_with_lambda_permissions
    with zipfile.ZipFile(f"{zip_base}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for root, _, files in os.walk(source, followlinks=True):
            for name in files:
                path = os.path.join(root, name)
                info = zipfile.ZipInfo(os.path.relpath(path, source))  # date_time: 1980-01-01 00:00:00
                info.create_system = 3
                info.external_attr = (os.stat(path).st_mode | 0o444) << 16
                with open(path, "rb") as fp:
                    zf.writestr(info, fp.read(), compress_type=zipfile.ZIP_DEFLATED)
    return "bench (samcli's steps)"


def unzip_like_lambda(archive: Path, dest: Path) -> None:
    """Extract keeping each entry's date and mode (zipfile alone would date every file now)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, dest))
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                path.chmod(mode)
            stamp = time.mktime((*info.date_time, 0, 0, -1))
            os.utime(path, (stamp, stamp))


def bytecode_kind(site: Path) -> dict:
    """How the layer's .pyc files are checked: the flags word of their 16-byte header."""
    kinds = {0: "timestamp", 1: "unchecked-hash", 3: "checked-hash"}
    counts: dict[str, int] = {}
    for pyc in site.rglob("*.cpython-313.pyc"):
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        kind = kinds.get(flags, f"flags={flags}")
        counts[kind] = counts.get(kind, 0) + 1
    return {"py": sum(1 for _ in site.rglob("*.py")), "pyc_cpython_313": counts}


# --- the layer's extension modules on this machine ---------------------------------------------

def _is_lambda_machine() -> bool:
    return sys.platform == "linux" and platform.machine() == "aarch64"


def native_stand_ins(site: Path, py313: str) -> list[str]:
    """Swap the layer's aarch64 extension modules for this machine's builds of the same versions."""
    if _is_lambda_machine():
        return []
    swapped = []
    for dist in sorted(site.glob("*.dist-info")):
        record = (dist / "RECORD").read_text().splitlines() if (dist / "RECORD").exists() else []
        binaries = [line.split(",")[0] for line in record if line.split(",")[0].endswith(".so")]
        if not binaries:
            continue
        meta = dict(line.split(": ", 1) for line in (dist / "METADATA").read_text().splitlines()
                    if line.startswith(("Name: ", "Version: ")))
        requirement = f"{meta['Name']}=={meta['Version']}"
        WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
        pip = subprocess.run([py313, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                              "--only-binary=:all:", "--dest", str(WHEEL_CACHE), requirement],
                             capture_output=True, text=True)
        if pip.returncode != 0:
            raise SystemExit(f"cold_start: pip download {requirement} failed:\n{pip.stderr[-2000:]}")
        norm = meta["Name"].replace("-", "_").lower()
        wheels = [w for w in WHEEL_CACHE.glob("*.whl")
                  if w.name.lower().startswith(f"{norm}-{meta['Version']}-".lower()) and "aarch64" not in w.name]
        if not wheels:
            raise SystemExit(f"cold_start: no wheel of {requirement} for this machine")
        for rel in binaries:
            (site / rel).unlink(missing_ok=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            for member in wheel.namelist():
                if member.endswith(".so") or ".libs/" in member:
                    wheel.extract(member, site)
        swapped.append(requirement)
    return swapped


# --- 4. the runs -------------------------------------------------------------------------------

def _env(opt: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return {
        **env,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(opt / "python"),
        "GATEWAY_STORE_URL": "dynamodb://bench",
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "TIKTOKEN_CACHE_DIR": str(opt / "tiktoken"),
    }


def _run(py: str, code: str, cwd: Path, env: dict[str, str]) -> dict:
    out = subprocess.run([py, "-s", "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(py: str, task: Path, opt: Path, env: dict[str, str], runs: int) -> dict:
    streaming = (task / "run.sh").exists()
    module = "main" if streaming else "app"
    build = "entry.app()" if streaming else ""
    # streaming: `python -m uvicorn main:app --factory` imports uvicorn, then the module, then calls it
    entry_code = _ENTRY.format(pre="import uvicorn" if streaming else "", module=module, build=build,
                               opt=str(opt))
    first = _run(py, entry_code, task, env)  # warms the file cache; not counted
    third, modules = first["third_party"], first["modules"]
    deps_code = _DEPS.format(names=modules, client=True)
    _run(py, deps_code, opt, env)
    # Entry and dependencies alternate, so a burst of load on this shared machine hits both sides.
    entry_runs, deps_runs, client_runs, entry_cpu, deps_cpu = [], [], [], [], []
    for _ in range(runs):
        entry = _run(py, entry_code, task, env)
        entry_runs.append(entry["seconds"])
        entry_cpu.append(entry["cpu"])
        deps = _run(py, deps_code, opt, env)
        deps_runs.append(deps["seconds"])
        deps_cpu.append(deps["cpu"])
        client_runs.append(deps["with_client"])
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
        # modules compiled from source at every cold start (0: the shipped bytecode is used)
        # (the function's own file, a few lines, always is: function code ships no bytecode)
        "entry_compiled_from_source": {
            "layer": entry["layer_compiled"],
            "of_which_llm_gateway": entry["gateway_compiled"],
            "function": entry["compiled"] - entry["layer_compiled"],
        },
        "third_party_compiled_from_source": deps["compiled"],
        # the same imports plus a stock botocore DynamoDB client, like the one every function builds at init
        # (botocore loading its service model): the part of the entry that is not the gateway's code
        "third_party_with_client_ms": round(client_ms, 1),
        "ratio_to_third_party_with_client": round(entry_ms / client_ms, 3),
        "third_party": third,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--build", action="store_true", help="build afresh with the Makefiles")
    source.add_argument("--artifacts", type=Path, help="a `sam build` output folder (default .aws-sam/build)")
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    py = python313()
    with tempfile.TemporaryDirectory(prefix="llmgw-cold-") as tmp:
        work = Path(tmp)
        default = ROOT / ".aws-sam" / "build"
        if args.artifacts:
            build = args.artifacts.resolve()
        elif not args.build and (default / "GatewayLayer" / "python").is_dir():
            build = default
        else:
            build = fresh_build(work / "build")
        functions = _functions(build)
        opt, zipper = work / "opt", ""
        for layer in ("GatewayLayer", "TiktokenLayer"):
            zipper = zip_like_sam(build / layer, work / layer)
            unzip_like_lambda(work / f"{layer}.zip", opt)
        tasks = {}
        for family, built in functions.items():
            zip_like_sam(built, work / built.name)
            tasks[family] = work / "task" / family
            unzip_like_lambda(work / f"{built.name}.zip", tasks[family])
        layer_bytecode = bytecode_kind(opt / "python")
        stand_ins = native_stand_ins(opt / "python", py)
        env = _env(opt)
        results = {family: measure(py, task, opt, env, args.runs) for family, task in tasks.items()}
    print(json.dumps({
        "target_ratio": TARGET, "runs": args.runs,
        "python": subprocess.run([py, "-c", "import sys; print(sys.version.split()[0])"],
                                 capture_output=True, text=True).stdout.strip(),
        "artifacts": str(build.relative_to(ROOT)) if build.is_relative_to(ROOT) else "fresh build",
        "zipper": zipper, "layer_bytecode": layer_bytecode, "native_stand_ins": stand_ins,
        "functions": results,
    }, indent=2))


if __name__ == "__main__":
    main()
