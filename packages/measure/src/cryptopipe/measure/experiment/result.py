"""The self-describing result directory one experiment writes, and its validated reader.

Layout (every table as Parquet, with a CSV copy of the same rows)::

    DIR/metadata.json         name, labels, environment, start/end (UTC), files with rows + sha256
    DIR/samples.parquet|csv   raw per-trade latencies: run, metric, symbol, trade_id, trade_time_us, value_ms
    DIR/metrics.parquet|csv   every scraped metric over the run: run, time_s, service, metric, labels, value
    DIR/summary.parquet|csv   the run's figures: run, metric, labels, stat, value

``metadata.json`` is written last, so a directory without it is an interrupted run. Each table's
row count and checksum are in it, so a truncated or edited file is detected on read, and every
row carries the run's name, so a file copied in from another run is detected too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cryptopipe.measure.experiment.errors import ResultError

FORMAT = "cryptopipe-experiment/1"
TABLES = ("samples", "metrics", "summary")
SAMPLE_METRICS = ("network", "network_corrected", "system", "e2e")

SCHEMAS: dict[str, pa.Schema] = {
    "samples": pa.schema(
        [
            ("run", pa.string()),
            ("metric", pa.string()),
            ("symbol", pa.string()),
            ("trade_id", pa.int64()),
            ("trade_time_us", pa.int64()),
            ("value_ms", pa.float64()),
        ]
    ),
    "metrics": pa.schema(
        [
            ("run", pa.string()),
            ("time_s", pa.float64()),
            ("service", pa.string()),
            ("metric", pa.string()),
            ("labels", pa.string()),
            ("value", pa.float64()),
        ]
    ),
    "summary": pa.schema(
        [
            ("run", pa.string()),
            ("metric", pa.string()),
            ("labels", pa.string()),
            ("stat", pa.string()),
            ("value", pa.float64()),
        ]
    ),
}


@dataclass(frozen=True)
class Result:
    """One experiment's result directory, read and checked."""

    path: Path
    metadata: dict[str, Any]
    samples: pa.Table
    metrics: pa.Table
    summary: pa.Table

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    def sample_values(self, metric: str) -> list[float]:
        table = self.samples.filter(pc.equal(self.samples["metric"], metric))
        return [float(v) for v in table["value_ms"].to_pylist()]

    def stat(self, metric: str, stat: str, labels: str = "{}") -> float | None:
        for row in self.summary.to_pylist():
            if row["metric"] == metric and row["stat"] == stat and row["labels"] == labels:
                return float(row["value"])
        return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def table_from_rows(name: str, run: str, rows: list[dict[str, Any]]) -> pa.Table:
    schema = SCHEMAS[name]
    columns = {field.name: [row.get(field.name) for row in rows] for field in schema}
    columns["run"] = [run] * len(rows)
    return pa.table(columns, schema=schema)


def write_result(out: Path, metadata: dict[str, Any], tables: dict[str, list[dict[str, Any]]]) -> Path:
    """Write the tables (Parquet + CSV), then ``metadata.json`` naming them with rows and checksums."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / "metadata.json").exists():
        raise ResultError(f"{out} already holds a result (metadata.json); choose another --out")
    name = str(metadata["name"])
    files: dict[str, dict[str, Any]] = {}
    for table_name in TABLES:
        table = table_from_rows(table_name, name, tables.get(table_name, []))
        parquet, csv = out / f"{table_name}.parquet", out / f"{table_name}.csv"
        pq.write_table(table, parquet)
        pacsv.write_csv(table, csv)
        for path in (parquet, csv):
            files[path.name] = {"rows": table.num_rows, "sha256": _sha256(path)}
    document = {"format": FORMAT, **metadata, "files": files}
    (out / "metadata.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return out


def read_result(path: Path) -> Result:
    """Read and check a result directory; :class:`ResultError` says what is wrong with it."""
    meta_path = path / "metadata.json"
    if not meta_path.is_file():
        raise ResultError(f"{path}: no metadata.json: not an experiment result, or the run was interrupted")
    try:
        metadata = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise ResultError(f"{meta_path}: not valid JSON ({exc}): the file is truncated or damaged") from exc
    if metadata.get("format") != FORMAT:
        raise ResultError(f"{meta_path}: format {metadata.get('format')!r}, expected {FORMAT!r}")
    for key in ("name", "labels", "files", "start_utc", "end_utc"):
        if key not in metadata:
            raise ResultError(f"{meta_path}: missing {key!r}")
    tables = {name: _read_table(path, metadata, name) for name in TABLES}
    return Result(path, metadata, **tables)


def _read_table(path: Path, metadata: dict[str, Any], name: str) -> pa.Table:
    file = path / f"{name}.parquet"
    expected = metadata["files"].get(file.name)
    if expected is None:
        raise ResultError(f"{path}: metadata.json does not list {file.name}")
    if not file.is_file():
        raise ResultError(f"{file}: missing (metadata.json lists {expected['rows']} rows)")
    try:
        table = pq.read_table(file)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ResultError(f"{file}: unreadable Parquet, truncated or damaged ({exc})") from exc
    runs = set(table["run"].to_pylist())
    if runs - {metadata["name"]}:
        raise ResultError(
            f"{file}: rows labelled run {sorted(runs - {metadata['name']})}, but metadata.json names this "
            f"run {metadata['name']!r}: mislabelled (a file from another run?)"
        )
    if table.num_rows != expected["rows"]:
        raise ResultError(f"{file}: {table.num_rows} rows, metadata.json says {expected['rows']}: truncated")
    if _sha256(file) != expected["sha256"]:
        raise ResultError(f"{file}: checksum differs from metadata.json: truncated or changed")
    return table
