"""A real local OpenAI-compatible teacher: llama.cpp's server on the PyPI SmolLM2 GGUF.

    pip install "llama-cpp-python[server]"
    python -m bench.llamacpp --port 8080        # serves until Ctrl-C

`serve_llamacpp()` does the same for tests: it starts the server on a free port,
waits until `/v1/models` answers, yields the base URL and stops it on exit.
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from core.children import die_with_parent
from emulator.process import stop_process
from student.models import smollm2_gguf


def llamacpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def server_command(port: int, *, n_ctx: int = 2048, threads: int = 2) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(smollm2_gguf()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(threads),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_llamacpp(port: int | None = None, *, start_timeout_s: float = 120.0) -> Iterator[str]:
    """Run llama.cpp's server on 127.0.0.1 and yield its OpenAI base URL (`http://127.0.0.1:P/v1`)."""
    if not llamacpp_installed():
        raise RuntimeError('llama.cpp server not installed: pip install "llama-cpp-python[server]"')
    port = port or _free_port()
    # The server logs a lot while loading: into a file, since an unread pipe fills up and stalls it.
    with tempfile.TemporaryFile() as log_file:
        proc = subprocess.Popen(
            server_command(port),
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            preexec_fn=die_with_parent(),
            start_new_session=True,
        )
        base_url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                if proc.poll() is not None:
                    log_file.seek(0)
                    raise RuntimeError(f"llama.cpp server exited: {log_file.read().decode(errors='replace')[-500:]}")
                try:
                    with urllib.request.urlopen(f"{base_url}/models", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"llama.cpp server did not answer within {start_timeout_s}s") from None
                    time.sleep(0.5)
            yield base_url
        finally:
            stop_process(proc, timeout_s=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.llamacpp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    with serve_llamacpp(args.port) as url:
        print(f"llama.cpp serving SmolLM2-135M-Instruct at {url} (Ctrl-C stops it)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
