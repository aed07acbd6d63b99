"""The image's install and start, replayed without Docker: what the container would run.

The package is installed into a fresh virtualenv the way the Dockerfile's build stage
does it (the same files copied, the same pinned install command), then started with the
final stage's environment and CMD, read from the Dockerfile itself so the two cannot
drift apart. Only the port, the worker count (2) and the store URLs are set by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from devstack.servers import free_port
from tests.support.api import claim, create, details
from tests.support.invariants import assert_invariants
from tests.support.servers import settings_env, wait_healthy
from tests.support.waiting import eventually, held_at_least

ROOT = Path(__file__).resolve().parents[2]
VENV_IN_IMAGE = "/opt/venv"
STORE_SETTINGS = {"DATABASE_URL", "MONGO_URL", "MONGO_DB", "REDIS_URL"}


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(instruction, arguments) per stage, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def image_recipe() -> tuple[list[str], str, dict[str, str], list[str]]:
    """What the build stage copies and installs, and the final stage's ENV and CMD."""
    build, final = dockerfile_stages()[0], dockerfile_stages()[-1]
    copied = [
        path
        for instruction, arguments in build
        if instruction == "COPY"
        for path in shlex.split(arguments)[:-1]
    ]
    (install,) = [a for i, a in build if i == "RUN" and "pip install" in a]
    environment: dict[str, str] = {}
    for instruction, arguments in final:
        if instruction == "ENV":
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                environment[key] = value
    (command,) = [json.loads(a) for i, a in final if i == "CMD"]
    return copied, install, environment, command


def image_healthcheck() -> list[str]:
    """The final stage's HEALTHCHECK command (exec form)."""
    (arguments,) = [a for i, a in dockerfile_stages()[-1] if i == "HEALTHCHECK"]
    _, _, command = arguments.partition(" CMD ")
    return list(json.loads(command))


def image_environment(image_venv: Path) -> dict[str, str]:
    """The final stage's ENV, its paths pointing into the replayed virtualenv."""
    _, _, image_env, _ = image_recipe()
    return {
        key: value.replace("$PATH", os.environ["PATH"]).replace(VENV_IN_IMAGE, str(image_venv))
        for key, value in image_env.items()
    }


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build stage: copy what it copies, install as it installs."""
    copied, install, _, _ = image_recipe()
    work = tmp_path_factory.mktemp("image")
    source = work / "src"
    source.mkdir()
    for path in copied:
        target = ROOT / path
        if target.is_dir():
            shutil.copytree(target, source / path, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(target, source / path)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    command = install.replace(VENV_IN_IMAGE, str(venv))
    subprocess.run(command, shell=True, cwd=source, check=True, capture_output=True)
    return venv


@pytest.fixture
def container(image_venv: Path, settings, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """The image's CMD with its ENV, started outside the source tree."""
    _, _, _, command = image_recipe()
    port = free_port()
    environment = image_environment(image_venv)
    environment |= {
        **{k: v for k, v in settings_env(settings).items() if k in STORE_SETTINGS},
        "HOST": "127.0.0.1",  # the image listens on 0.0.0.0; tests stay on loopback
        "PORT": str(port),
        "WORKERS": "2",
        "HOME": str(tmp_path),
    }
    log = (tmp_path / "container.log").open("wb")
    process = subprocess.Popen(
        command,
        env=environment,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: teardown takes the workers too
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process, tmp_path / "container.log")
        yield base, process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        log.close()


def test_the_image_runs_the_installed_package_not_the_source_tree(image_venv):
    _, _, environment, command = image_recipe()
    assert command == ["coupon-service"]
    assert environment["WORKERS"] == "0"  # one worker per CPU unless told otherwise
    assert (image_venv / "bin" / "coupon-service").exists()
    assert (image_venv / "bin" / "coupon-saga").exists()
    found = subprocess.run(
        [image_venv / "bin" / "python", "-c", "import orchestrator; print(orchestrator.__file__)"],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(ROOT) not in found.stdout


async def test_the_contract_over_http(http, container, name):
    base, _ = container
    await create(http, base, name, 1)
    assert (await claim(http, base, "first", name))[0] == 200
    status, body = await claim(http, base, "second", name)
    assert (status, body["error"]) == (409, "out_of_stock")
    assert (await details(http, base, name))["claimed_by"] == ["first"]
    async with http.get(f"{base}/ready") as response:
        assert response.status == 200


async def test_sigterm_during_a_burst_answers_every_accepted_request(
    container, pg, mongo, service, name, components
):
    """A normal stop: the listener closes, claims in progress finish, the pools close."""
    base, process = container
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        await create(http, base, name, 150)

        async def one(user: str) -> int | str:
            try:
                return (await claim(http, base, user, name))[0]
            except aiohttp.ClientConnectorError:
                return "refused"  # never reached the service: it had stopped listening

        burst = [asyncio.ensure_future(one(f"user_{n}")) for n in range(400)]
        await eventually(lambda: held_at_least(pg, name, 20))  # claims are under way
        process.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*burst)

    assert process.wait(timeout=60) == 0
    assert set(results) <= {200, 409, "refused"}, sorted(map(str, set(results)))
    assert results.count(200) >= 20
    # Nothing half-done for recovery to clean up after a normal stop.
    held = await pg.fetchval(
        "SELECT count(*) FROM holds WHERE coupon_name = $1 AND status = 'held'", name
    )
    assert held == 0
    in_flight = [
        r for r in await components.saga_log.find(None, 100_000)
        if r.status.in_flight and r.payload.get("coupon_name") == name
    ]  # fmt: skip
    assert in_flight == []
    facts = await assert_invariants(pg, mongo, name)
    assert len(facts.claims) == results.count(200)


def test_the_healthcheck_asks_the_port_the_service_listens_on(image_venv, container, tmp_path):
    base, _ = container
    environment = image_environment(image_venv) | {"HOME": str(tmp_path)}

    def healthcheck(port: str) -> int:
        run = subprocess.run(
            image_healthcheck(), env=environment | {"PORT": port}, capture_output=True
        )
        return run.returncode

    assert healthcheck(base.rsplit(":", 1)[1]) == 0
    assert healthcheck(str(free_port())) != 0  # nothing listens there: unhealthy
