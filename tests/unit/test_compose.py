"""docker-compose.yml cannot run here (no Docker engine): check its shape, that every command
it runs is a real `forecaster` subcommand, and that it commits no secrets."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_services_dependencies_and_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "mlflow", "mlflow-ui", "trainer", "scheduler", "api",
                             "prometheus", "grafana", "tuner"}  # fmt: skip
    for name in ("postgres", "mlflow", "mlflow-ui", "scheduler", "api", "prometheus", "grafana"):
        assert "test" in services[name]["healthcheck"], name
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert spec["condition"] in CONDITIONS
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):  # a file of this repository, mounted read-only
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
                continue
            assert source in compose["volumes"], f"{name} mounts undeclared volume {source}"
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["api"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert "readyz" in " ".join(services["api"]["healthcheck"]["test"])


def test_mlflow_runs_on_postgres_and_serves_artifacts(compose: dict[str, Any]) -> None:
    command = compose["services"]["mlflow"]["command"]
    assert command[:2] == ["mlflow", "server"]
    backend = command[command.index("--backend-store-uri") + 1]
    assert backend.startswith("postgresql://")
    assert "--serve-artifacts" in command


@pytest.mark.parametrize("service", ["trainer", "scheduler", "api", "tuner"])
def test_every_command_is_a_real_cli_subcommand(compose: dict[str, Any], service: str) -> None:
    command = compose["services"][service]["command"]
    assert command[0] == "forecaster"
    # Compose fills ${VAR:-default} from .env; the defaults must parse too.
    command = [re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", part) for part in command]
    args = build_parser().parse_args(command[1:])  # exits (fails the test) on a bad command
    assert callable(args.handler)
    config_file = next((command[i + 1] for i, a in enumerate(command) if a == "--config"), None)
    if config_file:
        assert (ROOT / config_file).exists()


def test_no_secrets_committed_and_every_variable_documented(compose: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    variables = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z_]+)=", example, re.M))
    assert variables <= documented, variables - documented
    for secret in ("POSTGRES_PASSWORD", "FORECASTER_API_KEY", "MLFLOW_AUTH_ADMIN_PASSWORD",
                   "MLFLOW_FLASK_SERVER_SECRET_KEY", "GRAFANA_ADMIN_PASSWORD"):  # fmt: skip
        assert re.search(rf"^{secret}=$", example, re.M), f"{secret} has a value in .env.example"
        assert re.findall(rf"\$\{{{secret}(:[?-][^}}]*)?\}}", text)
        assert not re.search(rf"\$\{{{secret}:-", text), f"{secret} has a default"


def test_only_authenticated_mlflow_is_published(compose: dict[str, Any]) -> None:
    """The tracking server the services use has no auth, so it must not be published; any
    MLflow server with a published port runs MLflow's basic-auth app."""
    services = compose["services"]
    assert "ports" not in services["mlflow"]
    published = [
        n for n, s in services.items() if s.get("ports") and "mlflow" in s.get("command", [])
    ]
    assert published == ["mlflow-ui"]
    for name in published:
        command = services[name]["command"]
        assert command[command.index("--app-name") + 1] == "basic-auth"
        env = services[name]["environment"]
        config = ROOT / env["MLFLOW_AUTH_CONFIG_PATH"].removeprefix("/app/")
        assert config.exists()
        assert "admin_password" not in config.read_text().replace("# ", "")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert '".[auth]"' in dockerfile


def test_dockerfile_installs_the_cpu_build_of_torch() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "download.pytorch.org/whl/cpu" in dockerfile
    assert '"torch>=2.3,<2.14"' in dockerfile


def test_docker_compose_config_accepts_the_file() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose not installed; the structural checks above still ran")
    result = subprocess.run(
        [tool, "-f", str(ROOT / "docker-compose.yml"), "--env-file", str(ROOT / ".env.example"),
         "config", "-q"],
        capture_output=True, text=True, timeout=60,
        env={"POSTGRES_PASSWORD": "x", "FORECASTER_API_KEY": "y", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_prometheus_scrapes_the_api_and_grafana_shows_the_live_gauges(
    compose: dict[str, Any],
) -> None:
    """The monitoring profile's configs point at what the service really exports."""
    scrape = yaml.safe_load((ROOT / "configs" / "prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    api_port = compose["services"]["api"]["command"][-1]
    assert targets == [f"api:{api_port}"]
    assert scrape["scrape_configs"][0]["metrics_path"] == "/metrics"
    dashboard = json.loads(
        (ROOT / "configs" / "grafana" / "dashboards" / "forecaster.json").read_text()
    )
    queries = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    from service.live_scores import LiveGauges, LiveScores
    from service.metrics import ServiceMetrics

    names = {m.name for m in ServiceMetrics().registry.collect()}
    names |= {m.name for m in LiveGauges(LiveScores("sqlite://")).collect()}
    used = set(re.findall(r"forecaster_[a-z_]+", queries))
    exported = {n for n in names} | {f"{n}_total" for n in names} | {f"{n}_bucket" for n in names}
    assert used <= exported, used - exported
    assert {"forecaster_live_coverage", "forecaster_live_pinball"} <= used


def test_tuner_replicas_share_a_study_in_their_own_postgres_database(
    compose: dict[str, Any],
) -> None:
    tuner = compose["services"]["tuner"]
    assert "container_name" not in tuner
    assert "ports" not in tuner
    storage = tuner["environment"]["FORECASTER_TUNING_STORAGE"]
    assert storage.startswith("postgresql://")
    assert storage.endswith("@postgres:5432/optuna")
    init = (ROOT / "configs" / "postgres-init" / "10-optuna.sql").read_text()
    assert "CREATE DATABASE optuna;" in init
    mounts = compose["services"]["postgres"]["volumes"]
    assert "./configs/postgres-init:/docker-entrypoint-initdb.d:ro" in mounts


def test_published_ports_listen_on_this_host_unless_told(compose: dict[str, Any]) -> None:
    """Nothing is published on every interface by default: PUBLISH_ADDRESS is 127.0.0.1 until
    the operator, having set the passwords, says otherwise."""
    ports = [p for s in compose["services"].values() for p in s.get("ports", [])]
    assert ports
    for port in ports:
        assert port.startswith("${PUBLISH_ADDRESS:-127.0.0.1}:"), port


def test_local_image_builds_replace_every_pulled_image_but_grafana() -> None:
    """deploy/compose.local-images.yml builds what Docker Hub would otherwise provide."""
    override = yaml.safe_load((ROOT / "deploy" / "compose.local-images.yml").read_text())
    built = override["services"]
    assert set(built) == {"postgres", "prometheus"}
    for name, service in built.items():
        assert (ROOT / service["build"]["context"] / "Dockerfile").exists(), name
        assert service["image"].endswith(":local"), name
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    pulled = {n for n, s in base.items() if "build" not in s and n not in built}
    assert pulled == {"grafana"}


def test_every_python_service_runs_under_an_init(compose: dict[str, Any]) -> None:
    """A Python PID 1 ignores a SIGTERM that comes before it sets its handler (measured: a
    `docker stop` 2 s after start waited 10 s for SIGKILL, exit 137; with tini 0.1 s)."""
    ours = [n for n, s in compose["services"].items() if s.get("image") == "forecaster:latest"]
    assert set(ours) == {"mlflow", "mlflow-ui", "trainer", "scheduler", "api", "tuner"}
    assert [n for n in ours if compose["services"][n].get("init") is not True] == []
