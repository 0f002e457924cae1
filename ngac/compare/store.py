"""Finding the runs to compare in an MLflow store, through the tracking API only.

A run set is named by an experiment name, or else by a sweep name (tag ``sweep``, searched in
every experiment). Sweep parent runs (tag ``ngac.role=sweep_parent``) carry no training of their
own and are left out. A store that cannot be reached, or a name that matches nothing, is a
one-line ``ValueError``; probing never creates a store.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from mlflow import MlflowClient
from mlflow.entities import Run

from ngac.mlflow_utils import fail_fast

PARENT_ROLE = "sweep_parent"
MAX_LISTED = 10  # experiments / sweeps named in a "no match" error
PAGE = 1000  # MLflow's largest page


def probe(uri: str) -> MlflowClient:
    """A client for ``uri`` after one fast call; a one-line ``ValueError`` if the store is absent or unreachable."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else parsed.path
        if path and path != ":memory:" and not Path(path).exists():
            raise ValueError(
                f"no MLflow store at {uri!r} ({path} does not exist); pass --tracking-uri or set MLFLOW_TRACKING_URI"
            )
    elif parsed.scheme in ("", "file") and not Path(parsed.path or uri).exists():
        raise ValueError(f"no MLflow store at {uri!r}; pass --tracking-uri or set MLFLOW_TRACKING_URI")
    client = MlflowClient(uri)
    with fail_fast():
        try:
            client.search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001 - any failure here means "unreachable"
            raise ValueError(f"tracking URI {uri!r} is unreachable ({reason(exc)})") from None
    return client


def reason(exc: Exception) -> str:
    """A short, one-line cause for a failed request."""
    text = " ".join(str(exc).split())
    for needle, short in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host"),
        ("timed out", "timed out"),
    ):
        if needle in text:
            return short
    return text[:160] if text else type(exc).__name__


def all_experiment_ids(client: MlflowClient) -> list[str]:
    ids: list[str] = []
    token = None
    while True:
        page = client.search_experiments(max_results=PAGE, page_token=token)
        ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            return ids


def search(
    client: MlflowClient, experiment_ids: list[str], filter_string: str = "", limit: int | None = None
) -> list[Run]:
    runs: list[Run] = []
    token = None
    while experiment_ids:
        page = client.search_runs(experiment_ids, filter_string, max_results=PAGE, page_token=token)
        runs += list(page)
        token = page.token
        if not token or (limit is not None and len(runs) >= limit):
            break
    return runs


def quote(value: str) -> str:
    """``value`` as a string literal of MLflow's search grammar."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"selector {value!r} contains both quote characters; it cannot be searched for")


def _no_match(client: MlflowClient, selector: str) -> ValueError:
    experiments = [e.name for e in client.search_experiments(max_results=PAGE)]
    sweeps: list[str] = []
    for r in search(client, all_experiment_ids(client), "tags.sweep LIKE '%'", limit=PAGE):
        s = r.data.tags.get("sweep")
        if s and s not in sweeps:
            sweeps.append(s)
    exp_list = ", ".join(experiments[:MAX_LISTED]) or "none"
    sweep_list = ", ".join(sorted(sweeps)[:MAX_LISTED]) or "none"
    return ValueError(
        f"no runs match {selector!r} (neither an experiment name nor a sweep tag); "
        f"experiments: {exp_list}; sweeps: {sweep_list}"
    )


def select_runs(client: MlflowClient, selector: str) -> tuple[list[Run], str]:
    """Runs of experiment ``selector``, else runs tagged ``sweep=selector``, oldest first; parent runs left out.

    Returns the runs and what matched: ``"experiment"`` or ``"sweep"``.
    """

    def keep(runs: list[Run]) -> list[Run]:
        kept = [r for r in runs if r.data.tags.get("ngac.role") != PARENT_ROLE]
        return sorted(kept, key=lambda r: (r.info.start_time or 0, r.info.run_id))

    exp = client.get_experiment_by_name(selector)
    if exp is not None:
        runs = keep(search(client, [exp.experiment_id]))
        if runs:
            return runs, "experiment"
    runs = keep(search(client, all_experiment_ids(client), f"tags.sweep = {quote(selector)}"))
    if runs:
        return runs, "sweep"
    raise _no_match(client, selector)
