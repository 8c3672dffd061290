"""The links training prints land where people open the MLflow UI."""

from __future__ import annotations

from pipelines.reports import model_url, run_url, ui_command


def test_a_local_store_points_at_forecaster_ui() -> None:
    url = run_url("sqlite:////data/mlflow.db", "1", "abc", "plots")
    assert url == "http://127.0.0.1:5000/#/experiments/1/runs/abc/artifactPath/plots"
    assert ui_command("sqlite:////data/mlflow.db").startswith("forecaster ui")
    assert ui_command("sqlite:////data/mlflow.db", None, "1").startswith(
        "forecaster ui, then http://127.0.0.1:5000/#/experiments/1/runs"
    )


def test_a_tracking_server_is_its_own_ui() -> None:
    assert run_url("http://mlflow.internal:5000/", "2", "r") == (
        "http://mlflow.internal:5000/#/experiments/2/runs/r"
    )
    assert ui_command("http://mlflow.internal:5000") == "open http://mlflow.internal:5000"


def test_the_configured_ui_wins_over_an_unreachable_tracking_server() -> None:
    """In compose the services track to http://mlflow:5000, which no browser reaches; the
    published UI is what the links must name."""
    url = run_url("http://mlflow:5000", "3", "r", "plots", "http://localhost:5000/")
    assert url == "http://localhost:5000/#/experiments/3/runs/r/artifactPath/plots"
    assert ui_command("http://mlflow:5000", "http://localhost:5000") == (
        "open http://localhost:5000"
    )
    # MLflow 3 opens an experiment on its GenAI overview: the link names the runs table.
    assert ui_command("http://mlflow:5000", "http://localhost:5000", "3") == (
        "open http://localhost:5000/#/experiments/3/runs"
    )
    assert model_url("http://mlflow:5000", "stock-lstm", "4", "http://localhost:5000") == (
        "http://localhost:5000/#/models/stock-lstm/versions/4"
    )
