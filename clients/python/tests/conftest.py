"""One real ``routereplay serve`` (the tiny preset, on the CPU) for the whole test session.

``ROUTEREPLAY_CLI`` names the CLI (a built ``routereplay.dll``, run with ``ROUTEREPLAY_DOTNET`` or ``dotnet``, or a
``routereplay`` executable); without it, the newest ``routereplay.dll`` built under ``src/RouteReplay.Cli/bin`` is used.
``ROUTEREPLAY_CACHE`` (where the tiny model is made) defaults to a temporary folder.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from routereplay_client import Client, ServeProcess, cli_command

REPO = Path(__file__).resolve().parents[3]


def _cli() -> str:
    configured = os.environ.get("ROUTEREPLAY_CLI")
    if configured:
        if not Path(configured).exists():
            pytest.fail(f"ROUTEREPLAY_CLI={configured} does not exist")
        return configured
    built = sorted(REPO.glob("src/RouteReplay.Cli/bin/*/net*/routereplay.dll"), key=lambda path: path.stat().st_mtime)
    if not built:
        pytest.fail("no built CLI: run `dotnet build RouteReplay.slnx`, or set ROUTEREPLAY_CLI to routereplay.dll or the routereplay executable")
    return str(built[-1])


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    env = dict(os.environ)
    env.setdefault("ROUTEREPLAY_CACHE", str(tmp_path_factory.mktemp("routereplay-cache")))
    command = cli_command(_cli(), os.environ.get("ROUTEREPLAY_DOTNET")) + [
        "serve", "--port", "0", "--num-blocks", "512", "--max-model-len", "1024", "--shutdown-grace-seconds", "1",
    ]
    with ServeProcess(command, env=env) as process:
        yield process


@pytest.fixture(scope="session")
def url(server) -> str:
    return server.url


@pytest.fixture(scope="session")
def client(url) -> Client:
    return Client(url)


@pytest.fixture(scope="session")
def info(client) -> dict:
    return client.model_info()


def load_example(name: str):
    """The module of ``examples/NAME.py``, loaded from its file (the examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
