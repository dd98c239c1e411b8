"""docs/compose.yaml describes what the tests ran (issue #14 item 6).

CI has no container runtime, so the compose file itself is never started; each part of it is run by a test on
one machine instead. This module keeps the file and those tests in step: the PostgreSQL major version of the
throwaway server, the replicas' `streamlit run` command and settings (tests/test_replicas.py), only settings
MedRAG reads, the Ray version pinned in requirements.txt, sticky sessions at the proxy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgserver import _binaries
from test_replicas import REPLICA_VARIABLES, STREAMLIT_OPTIONS

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docs" / "compose.yaml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return dict(loaded["services"])


def _settings_variables() -> set[str]:
    """Every environment variable medrag/config.py reads."""
    source = (REPO / "medrag" / "config.py").read_text(encoding="utf-8")
    return set(re.findall(r'"((?:MEDRAG|HF|HUGGINGFACE|SERPAPI|TAVILY|OPENAI)_[A-Z_]+)"', source))


def test_the_layout_has_every_part_the_issue_names(services: dict[str, Any]) -> None:
    assert {"db", "vllm", "medrag", "proxy", "ray-head", "ray-worker"} <= set(services)
    assert services["medrag"]["deploy"]["replicas"] >= 2
    build = services["medrag"]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).is_file()
    assert "docs/compose.yaml" in (REPO / "docs" / "DEPLOY.md").read_text(encoding="utf-8")


def test_the_replicas_run_the_command_and_settings_the_replica_test_ran(services: dict[str, Any]) -> None:
    app = services["medrag"]
    command = app["command"]
    assert command[1:5] == ["-m", "streamlit", "run", "streamlit_app.py"]
    options = command[5:]
    assert options[:4] == ["--server.address", "0.0.0.0", "--server.port", "8501"]
    assert tuple(options[4:]) == STREAMLIT_OPTIONS
    environment = app["environment"]
    assert set(REPLICA_VARIABLES) <= set(environment)
    unknown = set(environment) - _settings_variables() - {"HF_HUB_OFFLINE"}  # that one is huggingface_hub's
    assert not unknown, f"compose sets variables MedRAG never reads: {sorted(unknown)}"
    assert environment["MEDRAG_OPENAI_BASE_URL"].startswith("http://vllm:")  # the vllm service
    assert "@db:5432/" in environment["MEDRAG_DATABASE_URL"]
    data_volume = environment["MEDRAG_DATA_DIR"]
    for name in ("medrag", "ray-head", "ray-worker"):  # one shared folder for the replicas and the importers
        assert any(v.split(":")[1] == data_volume for v in services[name]["volumes"]), name


def test_postgres_is_the_major_version_the_tests_ran(services: dict[str, Any]) -> None:
    bindir = _binaries()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries here to compare with")
    assert services["db"]["image"] == f"postgres:{bindir.parent.name}"


def test_ray_and_the_proxy_are_set_up_as_tested(services: dict[str, Any]) -> None:
    pinned = re.search(r"^ray==(\S+)", (REPO / "requirements.txt").read_text(encoding="utf-8"), re.M)
    assert pinned is not None
    assert services["ray-head"]["image"] == services["medrag"]["image"]  # Ray from the same install: ray==pin
    assert "--head" in services["ray-head"]["command"]
    assert "ray-head:6379" in services["ray-worker"]["command"]
    labels = services["medrag"]["labels"]
    assert any(label.endswith("sticky.cookie=true") for label in labels)
