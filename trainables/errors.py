"""The study's own errors, each carrying the exit status a command ends with when it stops on one.

Both commands (`dae-study launch`, `dae-study report`) print such an error as one line and exit
with its `exit_code`; anything else that escapes them is a bug or a crash (a failure inside torch,
say) and ends with Python's traceback and status 1, never as "bad input". BadInput is a ValueError
and the missing-file errors are FileNotFoundErrors too, so callers that predate this module (and
`make_config`'s documented ValueError) keep working.
"""


class StudyError(Exception):
    """Something the user can act on; the message names the problem and the fix."""

    exit_code = 1


class BadInput(StudyError, ValueError):
    """A config, grid, flag, path or input file that cannot be used: nothing was scheduled."""

    exit_code = 2


class DatasetMissing(BadInput, FileNotFoundError):
    """The dataset's files are not where we looked; raised at launch, before any trial runs."""


class DatasetCorrupt(BadInput):
    """A dataset file exists but fails its checksum or cannot be read."""


class WeightsMissing(BadInput, FileNotFoundError):
    """The FID Inception weights are not on disk (and this machine may not be able to download)."""


class StoreError(StudyError):
    """The results store cannot be read: absent, empty, or holding a file that is no result row."""


class StoreUnusable(StoreError, BadInput):
    """The results store cannot be opened for a launch: a file where the folder belongs, no
    permission, or another launcher holding it."""

    exit_code = 2


class StoreWriteError(StoreError):
    """Writing to the store failed mid-run (read-only, full, a file where a folder belongs): the
    launch stops, since every row after this one would be lost too; the rows before it are kept."""

    exit_code = 3


class UnstorableRow(StoreError):
    """A row holds a value its column cannot (the store is fine; the next row may well fit)."""
