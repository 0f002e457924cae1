"""benchmarks/scale_compute.py --quick runs end to end (d = 1e5, one round) and writes a row per backend.

The benchmark is a script, not a package: it runs here as a subprocess, writing into ``tmp_path``.
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scale_compute.py"
ROWS = {"identity", "sherman_morrison", "diagonal", "kfac[steady]", "kfac[amortised]", "kfac[refresh]", "woodbury",
        "woodbury[rank=256]"}  # fmt: skip


def test_scale_compute_quick_writes_a_finite_row_per_backend(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    with open(tmp_path / "scale_compute.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["backend"] for r in rows} == ROWS and len(rows) == len(ROWS)
    for r in rows:
        assert r["device"] == "cpu" and int(r["d"]) == 100_028 and int(r["repeats"]) == 1
        for key in ("ms", "ratio", "peak_extra_mb", "base_mb"):
            value = float(r[key])
            assert math.isfinite(value) and value > 0, (r["backend"], key, value)
        assert math.isfinite(float(r["over_identity_mb"]))
    assert (tmp_path / "scale_compute.md").read_text().count("| cpu | 100,028 |") == len(ROWS)
    assert (tmp_path / "scale_compute.png").stat().st_size > 0
