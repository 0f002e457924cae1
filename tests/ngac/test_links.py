"""``ngac.links.ui_links``: the MLflow UI links printed when a run or a sweep ends."""

from __future__ import annotations

from pathlib import Path

from ngac.links import ui_links


def test_server_links_open_the_training_runs_table_and_the_run():
    assert ui_links("http://mlflow.example:8080/", "7", "abc") == [
        "MLflow training runs: http://mlflow.example:8080/#/experiments/7/runs",
        "MLflow run: http://mlflow.example:8080/#/experiments/7/runs/abc",
    ]
    assert ui_links("https://host/prefix", "0") == ["MLflow training runs: https://host/prefix/#/experiments/0/runs"]


def test_local_store_says_how_to_serve_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table, run = ui_links("sqlite:///mlflow.db", "3", "r1")
    assert table == (
        f"MLflow training runs: run `mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlflow.db'}`, "
        "then open http://127.0.0.1:5000/#/experiments/3/runs"
    )
    assert run == "MLflow run: http://127.0.0.1:5000/#/experiments/3/runs/r1"
    absolute = f"sqlite:///{tmp_path}/a b/x.db"  # a space: the command quotes the URI
    assert f"--backend-store-uri 'sqlite:///{tmp_path}/a b/x.db'`" in ui_links(absolute, "1")[0]
    folder = ui_links("mlruns", "1")[0]
    assert f"--backend-store-uri {Path(tmp_path / 'mlruns').as_uri()}`" in folder
    assert ui_links(f"file://{tmp_path}/mlruns", "1")[0] == folder


def test_other_stores_get_no_links():
    assert ui_links("databricks", "1", "r") == []
    assert ui_links("databricks://profile", "1") == []
