"""The benchmarks' ``--json OUT`` rows: the keys other tools read, one row per engine and filter."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"engine", "points", "filter", "p50_ms", "p99_ms", "recall_at_10", "build_s", "crops_per_s"}


def test_search_latency_writes_its_table_as_json_rows(tmp_path):
    out = tmp_path / "rows" / "search.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/search_latency.py", "--points", "600", "--dim", "16", "--queries", "5",
         "--local-points", "0", "--no-edge", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )
    rows = json.loads(out.read_text())
    assert [(r["engine"], r["filter"]) for r in rows] == [("numpy exact", "company"), ("numpy exact", "store")]
    for row in rows:
        assert KEYS <= row.keys()
        assert row["points"] == 600 and row["recall_at_10"] == 1.0
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["build_s"] > 0 and row["crops_per_s"] > 0
    assert "2 rows written" in result.stdout
