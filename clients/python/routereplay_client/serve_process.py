"""A ``routereplay serve`` (or ``router``) process started from Python, for tests and scripts."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from typing import List, Mapping, Optional, Sequence

_LISTENING = re.compile(r"(?:Serving '.*'|Routing) on (?P<url>http://[^ ]+)")


def cli_command(cli: str, dotnet: Optional[str] = None) -> List[str]:
    """How to run the CLI at ``cli``: ``[dotnet, cli]`` for a built ``routereplay.dll``, ``[cli]`` for an executable."""
    if cli.endswith(".dll"):
        return [dotnet or os.environ.get("DOTNET_HOST_PATH") or "dotnet", cli]
    return [cli]


class ServeProcess:
    """
    ``with ServeProcess(cli_command(path) + ["serve", "--port", "0"]) as server: Client(server.url)``: starts the
    process, returns once it logs the address it serves on (``--port 0`` picks a free port), and on exit stops it with
    SIGTERM (the server finishes or aborts what runs and exits), killing it if it has not stopped in ``stop_timeout``.
    """

    def __init__(self, command: Sequence[str], env: Optional[Mapping[str, str]] = None, startup_timeout: float = 120.0, stop_timeout: float = 30.0):
        self.command = list(command)
        self._env = dict(os.environ if env is None else env)
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._lines: List[str] = []
        self._listening = threading.Event()
        self._process: Optional[subprocess.Popen] = None
        self.url = ""

    @property
    def output(self) -> str:
        """Everything the process wrote so far, stdout and stderr."""
        return "\n".join(self._lines)

    def start(self) -> "ServeProcess":
        self._process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self._env, text=True, errors="replace")
        threading.Thread(target=self._read, daemon=True).start()
        if not self._listening.wait(self._startup_timeout) or not self.url:
            self.stop()
            raise RuntimeError(f"{' '.join(self.command)} did not start serving within {self._startup_timeout:.0f} s:\n{self.output}")
        return self

    def stop(self) -> Optional[int]:
        """Stops the process (SIGTERM, then SIGKILL past the stop timeout) and returns its exit code."""
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(self._stop_timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        return self._process.returncode

    def __enter__(self) -> "ServeProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            line = line.rstrip("\n")
            self._lines.append(line)
            match = _LISTENING.search(line)
            if match and not self.url:
                self.url = match.group("url").rstrip("/")
                self._listening.set()
        self._listening.set()
