"""The data set `noisesearch generate` writes: Parquet shards that Hugging Face `datasets` and any Parquet reader
load directly (`load_dataset("parquet", data_files="DIR/data/*.parquet")`, pandas, DuckDB, Spark).

Shard k of T is DIR/data/train-{k:05d}-of-{T:05d}.parquet: one row per condition, written whole (a uniquely
named temporary file, then an atomic replace), so a shard file is complete or absent. Images are embedded as
PNG bytes in the struct {bytes, path} that `datasets` reads as its Image feature (the schema's "huggingface"
metadata says so), so a shard is self-contained: no image files to keep in step with the records.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from noisesearch.errors import NoiseSearchError
from noisesearch.files import write_atomically

DATA = "data"  # the shards' folder under DIR
IMAGE = {"_type": "Image"}
SCALARS = {"index": "int64", "seed": "int64", "reward": "float64", "evaluator": "float64", "nfe": "int64",
           "wall_time_s": "float64", "metadata": "string", "algorithm": "string", "reward_name": "string",
           "config": "string"}
CANDIDATE_SCALARS = {"chosen_reward": "float64", "rejected_reward": "float64"}


def import_pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401  (the submodule the shards need)
    except ImportError:
        raise NoiseSearchError("generate writes Parquet through pyarrow: pip install 'noisesearch[dataset]'"
                               ) from None
    return pyarrow


def shard_path(out: Path, shard: int, shards: int) -> Path:
    return Path(out) / DATA / f"train-{shard:05d}-of-{shards:05d}.parquet"


def columns(condition: str, keep_candidates: bool) -> dict[str, Any]:
    """The shards' columns as `datasets` features (JSON): `condition` is "label" (int64) or "prompt" (string)."""
    value = {name: {"dtype": dtype, "_type": "Value"} for name, dtype in SCALARS.items()}
    features = {"index": value["index"], condition: {"dtype": "int64" if condition == "label" else "string",
                                                     "_type": "Value"}}
    features |= {name: spec for name, spec in value.items() if name != "index"} | {"image": IMAGE}
    if keep_candidates:
        features |= {"candidate_images": {"feature": IMAGE, "_type": "List"},
                     "candidate_rewards": {"feature": value["reward"], "_type": "List"},
                     "chosen": IMAGE, "rejected": IMAGE,
                     **{name: {"dtype": dtype, "_type": "Value"} for name, dtype in CANDIDATE_SCALARS.items()}}
    return features


def arrow_type(pa: Any, spec: dict[str, Any]) -> Any:
    if spec["_type"] == "Image":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    if spec["_type"] == "List":
        return pa.list_(arrow_type(pa, spec["feature"]))
    return {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}[spec["dtype"]]


def schema(condition: str, keep_candidates: bool) -> Any:
    pa = import_pyarrow()
    features = columns(condition, keep_candidates)
    return pa.schema([(name, arrow_type(pa, spec)) for name, spec in features.items()],
                     metadata={"huggingface": json.dumps({"info": {"features": features}})})


def write_shard(path: Path, rows: Sequence[dict[str, Any]], condition: str, keep_candidates: bool) -> None:
    """Write one shard's rows (dicts of the schema's columns) atomically: a reader sees the whole shard or none."""
    pa = import_pyarrow()
    table = pa.Table.from_pylist(list(rows), schema=schema(condition, keep_candidates))
    buffer = pa.BufferOutputStream()
    pa.parquet.write_table(table, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, buffer.getvalue().to_pybytes())


def shard_problem(path: Path, indices: Sequence[int], condition: str, keep_candidates: bool) -> str | None:
    """Why the shard file at `path` is not the finished shard of conditions `indices` (unreadable, another
    schema, other conditions), or None where it is."""
    pa = import_pyarrow()
    try:
        table = pa.parquet.read_table(path, columns=["index"])
        found = pa.parquet.read_schema(path)
    except (OSError, pa.ArrowException) as err:
        return f"unreadable ({' '.join(str(err).split())[:200]})"
    expected = schema(condition, keep_candidates)
    if not found.remove_metadata().equals(expected.remove_metadata()):
        return "its columns are not those of this job"
    if table.column("index").to_pylist() != list(indices):
        return "it holds other conditions"
    return None


def read_records(out: Path, with_images: bool = False) -> list[dict[str, Any]]:
    """The records of every shard under `out`, ordered by condition index (images left out unless asked for)."""
    pa = import_pyarrow()
    rows = []
    for path in sorted((Path(out) / DATA).glob("train-*.parquet")):
        names = [n for n in pa.parquet.read_schema(path).names
                 if with_images or n not in ("image", "candidate_images", "chosen", "rejected")]
        rows += pa.parquet.read_table(path, columns=names).to_pylist()
    return sorted(rows, key=lambda row: row["index"])


def remove_temporaries(out: Path) -> int:
    """Remove the temporary files of shard writes that a killed run left; the number removed."""
    stale = list((Path(out) / DATA).glob(".train-*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
