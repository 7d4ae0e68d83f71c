"""Fixtures shared by the stompbox-client tests: the broker `clients/run-smoke.sh` started
(STOMP_HOST / STOMP_PORT) and the user it made (STOMP_LOGIN / STOMP_PASSCODE; that broker
refuses anonymous CONNECTs), a way to run an example as a subprocess, and a master/standby
pair from `clients/pair.sh` (STOMPBOX_BIN) for the failover tests.

Every wait has a deadline so a broken broker fails a test instead of hanging it; no test
asserts how long anything took.
"""

import os
import pathlib
import subprocess
import sys
import tempfile
import uuid

import pytest

from stompbox_client import credentials_from_env

HERE = pathlib.Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
PAIR_SH = HERE.parent / "pair.sh"
# Seconds one example may run before it counts as hung.
EXAMPLE_TIMEOUT = float(os.environ.get("STOMP_EXAMPLE_TIMEOUT", "60"))


def broker_port():
    value = os.environ.get("STOMP_PORT")
    if not value:
        raise RuntimeError("set STOMP_PORT to the port of a running stompbox (see run-smoke.sh)")
    return int(value)


@pytest.fixture
def url():
    """A failover URL naming the one broker of run-smoke.sh."""
    host = os.environ.get("STOMP_HOST", "127.0.0.1")
    return f"failover:(tcp://{host}:{broker_port()})?randomize=false"


@pytest.fixture
def auth():
    """Client keyword arguments that log in as run-smoke.sh's user: {login, passcode}."""
    credentials = credentials_from_env()
    if not credentials:
        raise RuntimeError("set STOMP_LOGIN and STOMP_PASSCODE to a user of the broker at "
                           "STOMP_PORT (run-smoke.sh makes one)")
    return credentials


def pair_auth(pair):
    """Client keyword arguments that log in to a `pair` (the user pair.env names)."""
    return {"login": pair["STOMP_LOGIN"], "passcode": pair["STOMP_PASSCODE"]}


@pytest.fixture
def fresh():
    """fresh("queue", "name") -> a destination nobody else uses."""
    return lambda kind, name: f"/{kind}/py-client-{name}-{uuid.uuid4().hex[:10]}"


def run_example(name, *args, env=None, timeout=EXAMPLE_TIMEOUT):
    """Run examples/NAME with the test's Python (the venv's, where stompbox-client is
    installed) and return its stdout lines; fail with its output if it did not exit 0."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)],
                          env=full_env, capture_output=True, text=True, timeout=timeout)
    hint = ""
    if "No module named 'stompbox_client'" in proc.stderr:
        hint = "\n(stompbox-client is not installed in this venv: run make clients-deps-python)"
    assert proc.returncode == 0, (f"{name} exited {proc.returncode}{hint}\n"
                                  f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc.stdout.splitlines()


def read_env(path):
    values = {}
    for line in pathlib.Path(path).read_text().splitlines():
        key, _, value = line.partition("=")
        if key:
            values[key] = value
    return values


@pytest.fixture
def pair():
    """A fresh master/standby pair (a is the master); always stopped afterwards. Yields the
    values of pair.env (A_PORT, B_PORT, A_ADMIN, B_ADMIN, A_PID, B_PID, STOMP_LOGIN,
    STOMP_PASSCODE) as strings; `pair_auth(pair)` makes the last two Client arguments."""
    directory = tempfile.mkdtemp(prefix="stompbox-pair-")
    try:
        proc = subprocess.run([str(PAIR_SH), "start", directory], capture_output=True,
                              text=True, timeout=90)
        assert proc.returncode == 0, f"pair.sh start failed:\n{proc.stdout}\n{proc.stderr}"
        values = read_env(os.path.join(directory, "pair.env"))
        values["DIR"] = directory
        yield values
    finally:
        subprocess.run([str(PAIR_SH), "stop", directory], capture_output=True, timeout=60)
