"""Mid-trial checkpoints: one file per trial, under its trial_id, in a folder or behind a URI.

A trial on a spot worker can be lost at any moment; Ray retries it, and a relaunch runs it again.
Either way the new attempt finds the latest checkpoint of its trial_id here and trains on from it
(trainables/train.py says what a checkpoint holds), so a lost worker costs at most the epochs since
the last one. Whoever stores the trial's row removes its checkpoint afterwards (study/runner.py
does, once the row is in the store): a crash in between leaves a checkpoint, never loses a row.

Where: config `checkpoint_dir`, a local folder or a URI (s3://bucket/prefix, gs://..., hdfs://...,
or any protocol fsspec knows), all through one pyarrow filesystem (trainables/filesystems.py), so
local folders and buckets take the same code path. A checkpoint is written beside its final name and
then moved there: a reader finds the previous checkpoint or the whole new one, never part of one.
"""

import io
import warnings
from dataclasses import dataclass

import pyarrow.fs as pafs
import torch

from trainables.filesystems import filesystem

SUFFIX = ".pt"
PARTIAL = ".partial"  # a checkpoint being written: never read, replaced by the next attempt


@dataclass(frozen=True)
class Checkpoints:
    """The checkpoint of one trial: `<checkpoint_dir>/<trial_id>.pt`."""

    fs: pafs.FileSystem
    folder: str
    trial_id: str

    @property
    def path(self) -> str:
        return f"{self.folder.rstrip('/')}/{self.trial_id}{SUFFIX}"

    def load(self) -> dict | None:
        """The trial's latest checkpoint, or None when there is none or it cannot be read (then
        the trial starts over, with a warning: a checkpoint only ever saves time)."""
        if self.fs.get_file_info(self.path).type == pafs.FileType.NotFound:
            return None
        try:
            with self.fs.open_input_file(self.path) as source:
                blob = source.read()
            return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, corrupt, unreadable: training from scratch is right
            warnings.warn(
                f"ignoring the checkpoint {self.path}: {type(exc).__name__}: {exc}", stacklevel=2
            )
            return None

    def save(self, state: dict) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        partial = self.path + PARTIAL
        self.fs.create_dir(self.folder, recursive=True)
        with self.fs.open_output_stream(partial) as sink:
            sink.write(buffer.getbuffer())
        self.fs.move(partial, self.path)

    def remove(self) -> None:
        for path in (self.path, self.path + PARTIAL):
            if self.fs.get_file_info(path).type != pafs.FileType.NotFound:
                self.fs.delete_file(path)


def for_config(cfg) -> Checkpoints | None:
    """The checkpoints of cfg's trial, or None when it saves none (checkpoint_every 0 or no
    checkpoint_dir)."""
    if not cfg.checkpoint_every or not cfg.checkpoint_dir:
        return None
    fs, folder = filesystem(cfg.checkpoint_dir, "checkpoint_dir")
    return Checkpoints(fs, folder, cfg.trial_id())
