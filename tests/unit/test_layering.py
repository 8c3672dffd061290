"""Imports flow one way: forecaster <- pipelines; the service never imports training code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRAINING_ONLY = (
    "forecaster.methods.network.train",
    "forecaster.evaluation.backtest",
    "forecaster.methods.lstm",
    "forecaster.methods.linear",
    "forecaster.methods.windowed",
    "forecaster.methods.network.lit_module",
    "forecaster.methods.network.datamodule",
    "forecaster.evaluation.metrics",
    "forecaster.evaluation.plots",
    "lightning",
    "pytorch_lightning",
    "pipelines",
)


def imported_modules(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def offenders(package: str, banned: tuple[str, ...]) -> list[str]:
    return [
        f"{path} imports {name}"
        for path, names in imported_modules(package).items()
        for name in names
        if any(name == b or name.startswith(b + ".") for b in banned)
    ]


def test_library_imports_neither_pipelines_nor_service() -> None:
    assert offenders("forecaster", ("pipelines", "service")) == []


# The library's floors, in the order data flows: a module imports only from its own floor or
# the floors before it. The shared values at the top of forecaster/ are floor 0.
FLOORS = ("data", "methods", "evaluation", "registry", "predlog")
SHARED = ("config", "errors", "levels", "quantile_forecast", "local_state", "progress",
          "filelock")  # fmt: skip


def _floor(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "forecaster" or len(parts) == 1:
        return 0 if parts == ["forecaster"] else None
    if parts[1] in SHARED:
        return 0
    return FLOORS.index(parts[1]) + 1 if parts[1] in FLOORS else None


def test_the_library_folders_show_the_flow() -> None:
    """sources/features/windows -> methods -> evaluation -> registry -> prediction log, each
    folder importing only the ones before it; nothing else sits at the top of forecaster/."""
    upward, unplaced = [], []
    for path, names in imported_modules("forecaster").items():
        module = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        own = _floor(module)
        if own is None:
            unplaced.append(path)
            continue
        for name in names:
            theirs = _floor(name)
            if theirs is not None and theirs > own:
                upward.append(f"{path} (floor {own}) imports {name} (floor {theirs})")
    assert unplaced == []
    assert upward == []


@pytest.mark.parametrize("package", ["service"])
def test_service_imports_no_training_code(package: str) -> None:
    assert offenders(package, TRAINING_ONLY) == []


def test_pipelines_never_import_the_service() -> None:
    # `forecaster serve` names the app factory as a string for uvicorn; no module imports it.
    assert offenders("pipelines", ("service",)) == []


def test_lightning_comes_from_the_lightning_package_only() -> None:
    # pyproject depends on `lightning` (what Optuna's pruning callback subclasses); the
    # standalone pytorch_lightning is a second, incompatible class hierarchy: a callback of one
    # is refused by the other's Trainer.
    found = [
        o
        for p in ("forecaster", "pipelines", "service", "benchmarks")
        for o in offenders(p, ("pytorch_lightning",))
    ]
    assert found == []


def test_exceptions_users_see_live_in_one_module() -> None:
    """Every public exception is in forecaster/errors.py, so the CLI and the service can catch
    them by base class and nobody hunts for where one is defined."""
    elsewhere = []
    for package in ("forecaster", "pipelines", "service"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "forecaster" / "errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                    continue
                bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                if any(b.endswith(("Error", "Exception")) for b in bases):
                    elsewhere.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert elsewhere == []


def test_registered_models_load_through_the_registry_only() -> None:
    """One loader: `forecaster.registry.loader.load_registered` reads a version's bundle and weights as
    data; MLflow's pyfunc loader (which runs the code stored with a model) appears nowhere in
    the project's own code, and nothing else downloads a model's artifacts."""
    found = []
    for package in ("forecaster", "pipelines", "service", "benchmarks"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if "pyfunc.load_model" in text:
                found.append(f"{path.relative_to(ROOT)} calls mlflow.pyfunc.load_model")
            if (
                "download_artifacts" in text
                and path != ROOT / "forecaster" / "registry" / "loader.py"
            ):
                found.append(f"{path.relative_to(ROOT)} downloads artifacts")
    assert found == []


def test_the_prediction_log_tables_are_reached_through_its_repository_only() -> None:
    """`forecaster.predlog.repository` is the one module that reads and writes the log's tables
    (its migrations aside): the service's writer, replay, the monitor and the live scores all
    call it."""
    allowed = {"forecaster/predlog/repository.py", "forecaster/predlog/migrations/env.py"}
    found = [
        o
        for p in ("forecaster", "pipelines", "service", "benchmarks")
        for o in offenders(p, ("forecaster.predlog.schema",))
        if o.split(" imports ")[0] not in allowed
    ]
    assert found == []


def test_the_service_reaches_into_no_pipeline() -> None:
    """The service runs beside the pipelines, never on them: not even a helper comes from
    there (the training-code rule above names pipelines too; this one says why on its own)."""
    assert offenders("service", ("pipelines",)) == []


def test_version_tag_names_are_spelled_in_one_module() -> None:
    """`forecaster.registry.version_tags` owns the registry tags' names; nobody else spells them."""
    names = {"data_range", "test_range", "live_updated"}
    found = []
    for package in ("forecaster", "pipelines", "service"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "forecaster" / "registry" / "version_tags.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and node.value in names:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert found == []


CLASSIC_METHOD_FILES = ("__init__.py", "base.py", "random_walk.py", "garch.py", "egarch.py",
                        "har.py", "combination.py")  # fmt: skip


def test_classic_methods_are_served_code() -> None:
    """The classic methods are what the service filters at request time: numpy and scipy, the
    shared values at the top of the library, and each other; never the data pipeline, the
    network or training. `arch` is imported inside a fit only, so serving never loads it."""
    allowed = ("forecaster.config", "forecaster.errors", "forecaster.methods",
               "forecaster.data.ranges")  # fmt: skip
    heavy = ("torch", "lightning", "pandas", "arch", "sklearn")
    found = []
    for name in CLASSIC_METHOD_FILES:
        path = ROOT / "forecaster" / "methods" / name
        tree = ast.parse(path.read_text(encoding="utf-8"))
        everywhere = imported_modules("forecaster/methods")[str(path.relative_to(ROOT))]
        found += [f"{name} imports {m}" for m in everywhere
                  if m.startswith("forecaster") and not m.startswith(allowed)]  # fmt: skip
        top = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        top |= {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
        found += [f"{name} imports {m} at module level" for m in top if m.startswith(heavy)]
    assert found == []


def test_each_method_is_implemented_once() -> None:
    """One implementation per method: the served quantile maths (the GARCH recursion, the random
    walk's trailing quantiles, daily log returns) is defined in forecaster/methods only."""
    defined = ("def log_returns", "def garch_variances", "def standardised_t",
               "def _sorted_quantiles", "def empirical_quantiles")  # fmt: skip
    found = [
        f"{path.relative_to(ROOT)}: {d}"
        for package in ("forecaster", "pipelines", "service", "benchmarks")
        for path in (ROOT / package).rglob("*.py")
        if "methods" not in path.relative_to(ROOT).parts
        for d in defined
        if d + "(" in path.read_text(encoding="utf-8")
    ]
    assert found == []
