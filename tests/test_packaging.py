"""Fast by default: `pip install llm-gateway` with no extras gets serve's fast path (uvloop,
httptools, aiohttp's pool), while the Lambda layer still carries only what Lambda runs."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SPEED = PROJECT["optional-dependencies"]["speed"]


def test_the_fast_path_is_in_every_install():
    names = {d.split(">")[0].split(";")[0].strip() for d in SPEED}
    assert names == {"uvloop", "httptools", "aiohttp"}
    assert set(SPEED) <= set(PROJECT["dependencies"])


def test_the_lambda_layer_leaves_the_fast_path_out():
    done = subprocess.run(["make", "-s", "-C", str(ROOT / "layers" / "gateway"), "--eval",
                           "print-deps: ; @echo $(DEPS)", "print-deps"], capture_output=True, text=True, timeout=60)
    deps = done.stdout.split()
    assert done.returncode == 0 and "mangum>=0.17" in deps and "fastapi>=0.115" in deps
    assert not [d for d in deps if d.startswith(("uvloop", "httptools", "aiohttp"))], deps
