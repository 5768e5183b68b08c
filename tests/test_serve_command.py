"""``promofilter serve``: its options in-process, and the service as a real uvicorn process
on 127.0.0.1, started and stopped (SIGTERM) by the tests."""

from __future__ import annotations

import builtins
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from promofilter import cli

# --- the options, in-process -----------------------------------------------------------------


def test_serve_binds_to_loopback_by_default():
    args = cli.parse_args(["serve"])
    assert (args.host, args.port, args.workers, args.model, args.token_file) == (
        "127.0.0.1",
        8000,
        1,
        None,
        None,
    )
    assert cli.serve_environment(args) == {}  # unset options leave the environment alone


def test_serve_options_travel_to_the_workers_as_environment_variables(tmp_path):
    options = ["--threads", "1", "--max-wait-ms", "2.5", "--max-queued-segments", "99"]
    options += ["--token-file", "token.txt", "--threshold", "0.6", "--model-batch-size", "8"]
    options += ["--no-cascade"]
    args = cli.parse_args(["serve", "--model", str(tmp_path), *options])
    env = cli.serve_environment(args)
    assert env == {
        "PROMOFILTER_MODEL": str(tmp_path),
        "PROMOFILTER_THREADS": "1",
        "PROMOFILTER_MAX_WAIT_MS": "2.5",
        "PROMOFILTER_MAX_QUEUED_SEGMENTS": "99",
        "PROMOFILTER_THRESHOLD": "0.6",
        "PROMOFILTER_MODEL_BATCH_SIZE": "8",
        "PROMOFILTER_CASCADE": "false",
        "PROMOFILTER_TOKEN_FILE": os.path.abspath("token.txt"),
    }


def test_serve_without_the_extra_exits_2_with_the_install_hint(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_uvicorn(name, *args, **kwargs):
        if name == "uvicorn":
            raise ImportError("No module named 'uvicorn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvicorn)
    assert cli.main(["serve"]) == 2
    assert 'pip install "promofilter[serve]"' in capsys.readouterr().err


def test_serve_with_a_model_that_cannot_load_exits_3_before_binding(tmp_path, capsys):
    assert cli.main(["serve", "--model", str(tmp_path / "nowhere")]) == 3
    assert "no such model directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--token-file", "/nowhere/token"], "--token-file: cannot read /nowhere/token"),
        (["--request-timeout", "10", "--drain-timeout", "10"], "must exceed the request timeout"),
        (["--max-wait-ms", "20000"], "--max-wait-ms: must be between 0 and 10000, got 20000"),
        (["--request-timeout", "0"], "--request-timeout: must be at least 0.001, got 0.0"),
    ],
)
def test_bad_serve_options_exit_2_naming_the_option(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("PROMOFILTER_MAX_WAIT_MS", raising=False)
    assert cli.main(["serve", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_serve_variable_exits_2_naming_the_variable(capsys, monkeypatch):
    monkeypatch.setenv("PROMOFILTER_MAX_WAIT_MS", "soon")
    assert cli.main(["serve"]) == 2
    assert "PROMOFILTER_MAX_WAIT_MS: not a number: 'soon'" in capsys.readouterr().err


# --- a real uvicorn process ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, process: subprocess.Popen, url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def metric(self, name: str) -> float:
        for line in httpx.get(f"{self.url}/metrics", timeout=10).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in the metrics")


@contextmanager
def uvicorn_process(model: Path, *options: str, ready_within: float = 90) -> Iterator[Server]:
    port = free_port()
    log = model.parent / f"serve-{port}.log"
    command = [sys.executable, "-m", "promofilter", "serve", "--port", str(port)]
    command += ["--model", str(model), "--log-level", "info", *options]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + ready_within
        while True:
            assert process.poll() is None, f"the server exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"not ready in time: {log.read_text()}"
            try:
                if httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def classify(url: str, text: str) -> httpx.Response | Exception:
    """The response, or the transport error that stood for no answer at all."""
    try:
        return httpx.post(f"{url}/v1/classify", json={"texts": [text]}, timeout=60)
    except httpx.TransportError as error:
        return error


def sigterm_and_wait(server: Server, bound: float) -> float:
    """SIGTERM the server; the seconds until it exited, gracefully, within ``bound``.

    After a graceful shutdown uvicorn raises the signal it caught again, so that supervisors
    see the usual exit status for it: -SIGTERM for a single process, 0 from the supervisor of
    several workers. What tells a graceful exit is the lifespan shutdown in the log."""
    sent = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    try:
        code = server.process.wait(bound)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {bound} s after SIGTERM") from None
    took = time.monotonic() - sent
    log = server.log.read_text()
    assert code in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log, log
    return took


def test_sigterm_drains_the_requests_in_flight(fp32_model):
    # Segments wait up to 1.5 s for batch mates, so the requests are surely in flight (held
    # in the batcher's queue) when SIGTERM comes.
    options = ["--max-wait-ms", "1500", "--max-batch-size", "1000", "--max-body-bytes", "2000"]
    with uvicorn_process(fp32_model, *options, "--drain-timeout", "15") as server:
        direct = httpx.post(f"{server.url}/v1/classify", json={"texts": ["Hallo Welt."]})
        assert direct.status_code == 200
        chunks = iter([b'{"texts": ["', b"x" * 1500, b"x" * 1500, b'"]}'])
        streamed = httpx.post(
            f"{server.url}/v1/classify",
            content=chunks,
            headers={"content-type": "application/json"},
        )
        assert streamed.status_code == 413  # counted as it came: no Content-Length

        texts = [f"Meldung Nummer {i}: der Kurs stieg um {i} Prozent." for i in range(8)]
        with ThreadPoolExecutor(len(texts)) as pool:
            answers = [pool.submit(classify, server.url, text) for text in texts]
            deadline = time.monotonic() + 10
            while server.metric("promofilter_queue_depth") < len(texts):
                assert time.monotonic() < deadline, "the requests never queued up"
                time.sleep(0.02)
            took = sigterm_and_wait(server, bound=20)
            results = [answer.result() for answer in answers]
    lost = [r for r in results if isinstance(r, Exception)]
    assert not lost, f"requests without an answer: {lost}"
    assert [r.status_code for r in results] == [200] * len(texts)
    assert all(len(r.json()["results"]) == 1 for r in results)
    assert took < 15
    with pytest.raises(httpx.ConnectError):  # gone: refused, not hanging
        httpx.get(f"{server.url}/healthz", timeout=5)


def test_sigterm_with_a_stuck_request_answers_it_and_exits_within_the_bound(fp32_model):
    # A lone segment would wait 10 s for batch mates: past its 2 s deadline, so it gets 503
    # during the drain, and the process exits well before the 4 s drain timeout.
    options = ["--max-wait-ms", "10000", "--max-batch-size", "2", "--request-timeout", "2"]
    with (
        uvicorn_process(fp32_model, *options, "--drain-timeout", "4") as server,
        ThreadPoolExecutor(1) as pool,
    ):
        answer = pool.submit(classify, server.url, "Der Kurs stieg.")
        deadline = time.monotonic() + 10
        while server.metric("promofilter_queue_depth") < 1:
            assert time.monotonic() < deadline, "the request never queued up"
            time.sleep(0.02)
        took = sigterm_and_wait(server, bound=10)
        result = answer.result()
    assert not isinstance(result, Exception), f"no answer: {result}"
    assert result.status_code == 503 and "deadline of 2 s" in result.json()["detail"]
    assert took < 4 + 1


def test_workers_each_load_their_own_model_and_share_the_port(fp32_model, tmp_path):
    token = tmp_path / "token"
    token.write_text("geheim\n")
    options = ["--workers", "2", "--token-file", str(token)]
    with uvicorn_process(fp32_model, *options) as server:
        deadline = time.monotonic() + 60
        while server.log.read_text().count("loaded and warmed up") < 2:  # one line per worker
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.1)
        headers = {"authorization": "Bearer geheim"}
        for _ in range(4):
            response = httpx.post(
                f"{server.url}/v1/classify", json={"texts": ["Hallo"]}, headers=headers
            )
            assert response.status_code == 200
        assert httpx.post(f"{server.url}/v1/classify", json={"texts": ["Hallo"]}).status_code == 401
        assert sigterm_and_wait(server, bound=20) < 20
    assert server.log.read_text().count("Started server process") == 2


def test_the_process_answers_json_errors_for_bad_input(fp32_model):
    with uvicorn_process(fp32_model) as server:
        bad = httpx.post(
            f"{server.url}/v1/analyze",
            content=json.dumps({"text": "a\ud800"}).encode(),
            headers={"content-type": "application/json"},
        )
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", "text"]
        sigterm_and_wait(server, bound=20)
