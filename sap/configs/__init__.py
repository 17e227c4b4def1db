"""Training configurations shipped with ``sap`` (YAML for LightningCLI).

``sap fit --config lesion-cpu-small`` finds ``lesion-cpu-small.yaml`` here when no file of that
name exists in the working directory, so the packaged recipes are one word away while a
user's own file always wins.
"""

from __future__ import annotations

from pathlib import Path

from sap.errors import MissingPathError

CONFIG_DIR = Path(__file__).resolve().parent
#: ``sap benchmark --preset NAME`` reads ``benchmark/NAME.yaml`` (not a LightningCLI config).
PRESET_DIR = CONFIG_DIR / "benchmark"


def list_presets() -> list[str]:
    """Names of the packaged ``sap benchmark`` presets."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """Path of a packaged benchmark preset by name.

    Raises:
        MissingPathError: no such preset; the message lists the packaged ones.
    """
    path = PRESET_DIR / f"{name.removesuffix('.yaml')}.yaml"
    if not path.is_file():
        raise MissingPathError(
            f"No benchmark preset named {name!r}; available: {', '.join(list_presets())}."
        )
    return path


def list_configs() -> list[str]:
    """Names of the packaged configs (file names without ``.yaml``)."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))


def config_path(name: str) -> Path:
    """Path of a packaged config by name (with or without ``.yaml``).

    Raises:
        MissingPathError: no such config (a ``FileNotFoundError``); the message lists the
            packaged names and close matches.
    """
    stem = name[:-5] if name.endswith(".yaml") else name
    path = CONFIG_DIR / f"{stem}.yaml"
    if not path.is_file():
        import difflib

        close = difflib.get_close_matches(stem, list_configs(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise MissingPathError(
            f"No packaged config named {name!r}; available: {', '.join(list_configs())}.{hint}"
        )
    return path


def resolve_config_argument(argv: list[str]) -> list[str]:
    """Replace ``--config NAME`` by the packaged file when ``NAME`` is not an existing path."""
    resolved = list(argv)
    for index, arg in enumerate(resolved):
        value = None
        if arg in ("--config", "-c") and index + 1 < len(resolved):
            value, position, prefix = resolved[index + 1], index + 1, ""
        elif arg.startswith("--config="):
            value, position, prefix = arg.split("=", 1)[1], index, "--config="
        if value is None or Path(value).exists():
            continue
        if "/" in value or "\\" in value:
            raise MissingPathError(f"Config file {value} does not exist.")
        resolved[position] = prefix + str(config_path(value))
    return resolved
