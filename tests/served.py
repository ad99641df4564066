"""`llm-gateway serve` as a real subprocess (several workers sharing one SQLite file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fakes.server import free_port

ROOT = Path(__file__).resolve().parent.parent


class Served:
    def __init__(self, proc: subprocess.Popen, url: str, banner: dict, env: dict) -> None:
        self.proc = proc
        self.url = url
        self.base_url = url + "/v1"
        self.banner = banner
        self.env = env

    def cli(self, *args: str) -> tuple[int, dict]:
        """Run `llm-gateway ARGS` against the same store; returns (exit code, printed JSON)."""
        return run_cli(self.env, *args)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_cli(env: dict[str, str], *args: str, cwd: Path | None = None) -> tuple[int, dict]:
    """Run `llm-gateway ARGS` with `env`; returns (exit code, the one JSON object it printed)."""
    done = subprocess.run([sys.executable, "-m", "llm_gateway.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout + done.stderr
    return done.returncode, json.loads(lines[0])


def gateway_env(store_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "GATEWAY_"))}
    env["PYTHONPATH"] = str(ROOT / "layers" / "gateway")
    env["GATEWAY_STORE_URL"] = f"sqlite:///{store_dir / 'gateway.db'}"
    env.update(extra or {})
    return env


def serve(cwd: Path, env: dict[str, str], workers: int = 1, timeout: float = 30) -> Served:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_gateway.cli", "serve", "--port", str(port), "--workers", str(workers)],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    banner = json.loads(proc.stdout.readline())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("llm-gateway serve did not come up")
        time.sleep(0.1)
    return Served(proc, url, banner, env)
