"""Read back what an offline W&B run recorded, without a server: config, history, summary.

An offline run keeps everything in ``run-<id>.wandb``: a LevelDB-style log (32 KiB blocks of
records, each with a 7-byte header: crc32, length, kind) of ``wandb_internal_pb2.Record``
protocol buffers, after a 7-byte file header (``:W&B``, magic, version).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK_BYTES = 32768
HEADER_BYTES = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What one offline run recorded: its config (``key -> value``), history rows, summary."""

    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def logged(self, key: str) -> list[Any]:
        """Every value logged under ``key``, in order."""
        return [row[key] for row in self.history if key in row]


def records(path: Path) -> list[bytes]:
    """The raw protocol-buffer records of a ``.wandb`` file."""
    data = Path(path).read_bytes()
    if not data.startswith(b":W&B"):
        raise ValueError(f"{path} is not a W&B run file")
    position, out, pending = HEADER_BYTES, [], b""
    while position + HEADER_BYTES <= len(data):
        left_in_block = BLOCK_BYTES - position % BLOCK_BYTES
        if left_in_block < HEADER_BYTES:
            position += left_in_block
            continue
        length = int.from_bytes(data[position + 4 : position + 6], "little")
        kind = data[position + 6]
        payload = data[position + HEADER_BYTES : position + HEADER_BYTES + length]
        position += HEADER_BYTES + length
        if kind == FULL:
            out.append(payload)
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            out.append(pending + payload)
            pending = b""
    return out


def read_offline_run(run_dir: Path) -> OfflineRun:
    """Config, history and summary of the offline run in ``run_dir`` (``offline-run-*``)."""
    from wandb.proto import wandb_internal_pb2

    (run_file,) = Path(run_dir).glob("run-*.wandb")
    run = OfflineRun()
    for payload in records(run_file):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            for item in record.run.config.update:
                run.config[item.key] = _value(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run.config[item.key or "/".join(item.nested_key)] = _value(item.value_json)
        elif kind == "history":
            run.history.append(
                {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
            )
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return run


def _value(value_json: str) -> Any:
    """A config entry's value (W&B stores ``{"value": ...}`` or, for sweeps, the bare value)."""
    value = json.loads(value_json)
    return value["value"] if isinstance(value, dict) and set(value) == {"value"} else value
