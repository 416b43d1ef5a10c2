"""deploy/container: what can be checked of the image without a Docker engine.

The Dockerfile is parsed; its build stage is replayed on a context holding only what it COPYs
(the wheel must build from that alone); the HEALTHCHECK command runs against a live daemon's
/healthz and against failing ones; the image's configuration validates with the project's
loader and listens where the image EXPOSEs.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.cli import start_demo, wait_until_serving
from tests.support.paths import ROOT, TUYA_EVENTS
from tests.support.ports import free_port
from tests.support.servers import StatusServer
from tuya_events.cli.main import build_parser
from tuya_events.config.loader import settings_from_mapping
from tuya_events.config.settings import catalogue_path, state_directory

DOCKERFILE = ROOT / "deploy" / "container" / "Dockerfile"
IMAGE_CONFIG = ROOT / "deploy" / "container" / "config.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order: comments dropped, continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


INSTRUCTIONS = instructions(DOCKERFILE.read_text())


def all_of(keyword: str) -> list[str]:
    return [arguments for name, arguments in INSTRUCTIONS if name == keyword]


def last(keyword: str) -> str:
    found = all_of(keyword)
    assert found, f"no {keyword} in the Dockerfile"
    return found[-1]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value)
    return value


def runtime_stage() -> list[tuple[str, str]]:
    starts = [i for i, (name, _) in enumerate(INSTRUCTIONS) if name == "FROM"]
    return INSTRUCTIONS[starts[-1] :]


# -- base image, stages, user ------------------------------------------------------------------


def test_base_image_is_debian_slim_glibc_and_the_build_has_two_stages() -> None:
    args = dict(item.split("=", 1) for item in all_of("ARG") if "=" in item)
    froms = all_of("FROM")
    assert len(froms) >= 2, "a build stage and a runtime stage"
    assert froms[0].endswith(" AS build")
    for line in froms:
        image = line.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.fullmatch(r"python:3\.1[1-9]-slim-(bookworm|trixie)", image), image
        assert "alpine" not in image and "musl" not in image


def test_runs_as_a_numeric_non_root_user_the_image_creates() -> None:
    user = last("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: numeric, so runAsNonRoot can check it"
    assert gid.isdigit() and int(gid) != 0
    created = " ".join(arguments for name, arguments in runtime_stage() if name == "RUN")
    assert f"--uid {uid}" in created and f"--gid {gid}" in created
    # Nothing after USER switches back.
    stage = runtime_stage()
    after = stage[[name for name, _ in stage].index("USER") :]
    assert [arguments for name, arguments in after if name == "USER"] == [user]


def test_entrypoint_command_signal_and_port() -> None:
    assert exec_form(last("ENTRYPOINT")) == ["tuya-events"]
    command = exec_form(last("CMD"))
    assert command == ["run", "-c", "/etc/tuya-events/config.yaml"]
    parsed = build_parser().parse_args(command)
    assert parsed.command == "run" and parsed.config == "/etc/tuya-events/config.yaml"
    assert last("STOPSIGNAL") == "SIGTERM"
    assert last("EXPOSE") == "9464"


# -- what the build copies ---------------------------------------------------------------------


def copied_sources() -> list[tuple[str, str]]:
    """``(source, destination)`` of every COPY from the build context (not ``--from=``)."""
    pairs = []
    for arguments in all_of("COPY"):
        parts = arguments.split()
        if any(part.startswith("--from=") for part in parts):
            continue
        parts = [part for part in parts if not part.startswith("--")]
        *sources, destination = parts
        pairs += [(source, destination) for source in sources]
    return pairs


def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str) -> bool:
    parts = Path(path).parts
    for pattern in ignore_patterns():
        pattern = pattern.removeprefix("**/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            return True
        if any(fnmatch.fnmatch(part, pattern) for part in parts):
            return True
    return False


def test_every_copied_path_exists_and_is_not_ignored() -> None:
    sources = copied_sources()
    assert sources
    for source, _ in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not ignored(source), f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_the_context_small() -> None:
    for path in (".venv", ".git", ".cache", "tests", "tuya_events/__pycache__/x.pyc"):
        assert ignored(path), f"{path} is sent to the Docker daemon"
    assert ignored("tuya_events/cli/__pycache__/main.cpython-311.pyc")
    assert not ignored("tuya_events/cli/main.py")


def test_the_build_stage_makes_the_wheel_from_the_copied_files_alone(tmp_path: Path) -> None:
    """What `pip wheel .` in the build stage sees is only what was COPYed: nothing missing."""
    context = tmp_path / "src"
    context.mkdir()
    starts = [i for i, (name, _) in enumerate(INSTRUCTIONS) if name == "FROM"]
    build_stage = INSTRUCTIONS[starts[0] : starts[1]]
    assert ("WORKDIR", "/src") in build_stage
    for name, arguments in build_stage:
        if name != "COPY":
            continue
        *sources, destination = arguments.split()
        for source in sources:
            # Docker's rules, relative to WORKDIR: a directory's contents go into the
            # destination; into a destination ending in / (or .), a file keeps its name.
            target = context / destination
            if destination.endswith("/") or destination == ".":
                target = target / Path(source).name
            if (ROOT / source).is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                shutil.copytree(ROOT / source, target, ignore=ignore, dirs_exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, target)
    dist = tmp_path / "dist"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(dist),
            ".",
        ],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = dist.glob("tuya_events-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "tuya-events = tuya_events.cli.main:main" in archive.read(entry_points).decode()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        # pyproject's readme: without README.md in the context the description is empty.
        assert "Nothing lost." in archive.read(metadata).decode()
    package = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "tuya_events").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert package <= names, sorted(package - names)


# -- HEALTHCHECK -------------------------------------------------------------------------------


def healthcheck_command() -> list[str]:
    arguments = last("HEALTHCHECK")
    options, _, command = arguments.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = exec_form(command)
    assert argv[:2] == ["tuya-events", "health"]
    return argv


def run_healthcheck(port: int, tmp_path: Path) -> subprocess.CompletedProcess:
    """The HEALTHCHECK command as written, with its -c pointing at a config for ``port``."""
    argv = healthcheck_command()
    config = tmp_path / "probe.yaml"
    config.write_text(
        "tuya: {access_id: a, access_secret: " + "k" * 32 + ", region: eu}\n"
        f"http: {{listen: '0.0.0.0:{port}'}}\n"
    )
    arguments = [str(config) if arg == "/etc/tuya-events/config.yaml" else arg for arg in argv[1:]]
    return subprocess.run(
        [str(TUYA_EVENTS), *arguments], capture_output=True, text=True, timeout=30
    )


def test_healthcheck_reads_the_config_that_cmd_runs_with() -> None:
    assert "/etc/tuya-events/config.yaml" in healthcheck_command()
    assert last("CMD").endswith('"/etc/tuya-events/config.yaml"]')


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    process = start_demo(port, tmp_path, stdout=subprocess.DEVNULL)
    try:
        wait_until_serving(port, process, "/healthz", timeout=30)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_healthcheck_passes_against_a_live_daemon(demo: int, tmp_path: Path) -> None:
    result = run_healthcheck(demo, tmp_path)
    assert result.returncode == 0, result.stderr


def test_healthcheck_fails_on_an_error_status_and_on_a_closed_port(tmp_path: Path) -> None:
    server = StatusServer(503).start()
    try:
        answered = run_healthcheck(server.port, tmp_path)
    finally:
        server.stop()
    assert answered.returncode == 1
    assert "503" in answered.stderr
    closed = run_healthcheck(free_port(), tmp_path)
    assert closed.returncode == 1


# -- the image's configuration -----------------------------------------------------------------


def test_image_configuration_copied_to_where_cmd_reads_it() -> None:
    destinations = {source: destination for source, destination in copied_sources()}
    assert destinations["deploy/container/config.yaml"] == "/etc/tuya-events/config.yaml"


def test_image_configuration_validates_and_listens_on_all_interfaces(tmp_path: Path) -> None:
    secret = tmp_path / "access_secret"
    secret.write_text("k" * 32 + "\n")
    env = {
        "TUYA_ACCESS_ID": "access0id0000000",
        "TUYA_ACCESS_SECRET_FILE": str(secret),
        "STATE_DIRECTORY": "/var/lib/tuya-events",
    }
    settings = settings_from_mapping(yaml.safe_load(IMAGE_CONFIG.read_text()), env, "image")
    assert settings.http.listen == ("0.0.0.0", int(last("EXPOSE")))
    assert settings.tuya.access_secret.get_secret_value() == "k" * 32
    assert settings.tuya.region == "eu"
    volumes = exec_form(last("VOLUME"))
    assert Path(settings.dead_letter.path).parent == Path(volumes[0])
    # The device catalogue on the same volume, also without $STATE_DIRECTORY.
    assert catalogue_path(settings) == Path(volumes[0]) / "catalogue.sqlite3"
    assert settings.catalogue.path is None
    bare = {key: value for key, value in env.items() if key != "STATE_DIRECTORY"}
    fallback = settings_from_mapping(yaml.safe_load(IMAGE_CONFIG.read_text()), bare, "image")
    assert state_directory(fallback) == Path(volumes[0])
    assert last("WORKDIR") == volumes[0]
    environment = " ".join(all_of("ENV"))
    assert f"STATE_DIRECTORY={volumes[0]}" in environment


def test_image_configuration_reads_the_mounted_secret_by_default(tmp_path: Path) -> None:
    tree = yaml.safe_load(IMAGE_CONFIG.read_text())
    assert tree["tuya"]["access_secret_file"].endswith(":-/etc/tuya-events/access_secret}")
