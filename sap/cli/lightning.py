"""``sap fit|validate|test``: LightningCLI over the SAP tasks (and the SSL baseline) and data modules.

What ``sap`` adds to LightningCLI (wiring only; the logic lives in :mod:`sap.tasks`):

- ``patch_size`` and ``channels`` are given once, on the model, and linked to the data module;
- ``--ckpt_path last`` finds the run's newest ``last.ckpt`` (or fails), and a checkpoint is
  checked to be a ``sap`` checkpoint of this model before anything is loaded
  (:mod:`sap.tasks.resume`); a module about to receive a checkpoint's weights does not read
  its ``init`` source (:func:`sap.tasks.restoring_weights`);
- the Trainer always gets :class:`~sap.tasks.callbacks.RandomState`,
  :class:`~sap.tasks.callbacks.SignalCheckpoint` and
  :class:`~sap.tasks.callbacks.FinalValidation`; a run stopped by a signal ends with
  :class:`sap.errors.RunInterrupted` (the signal's exit status, where the checkpoint is);
- the resolved config (model, data, trainer, seed) is written as ``config.yaml`` next to the
  run's checkpoints and sent to W&B when a WandbLogger is attached;
- parse and configuration errors become :class:`sap.errors.ConfigError` (one message, exit 2).
"""

from __future__ import annotations

import re
import signal
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from jsonargparse import ArgumentError
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

import sap.tasks  # noqa: F401  (imported subclasses are what short class names resolve to)
from sap.configs import resolve_config_argument
from sap.errors import ConfigError, RunInterrupted, UserError
from sap.io import write_text_atomic
from sap.tasks import restoring_weights
from sap.tasks.callbacks import FinalValidation, RandomState, SignalCheckpoint, run_directory
from sap.tasks.checks import check_data_matches
from sap.tasks.resume import check_checkpoint_fits, resolve_checkpoint_path
from sap.tasks.schedule import check_training_length
from sap.zoo.checkpoint import read_checkpoint

#: Values declared once, on the model, and passed on to the data module.
LINKED_ARGUMENTS: tuple[str, ...] = ("patch_size", "channels")


def run_lightning_cli(argv: Sequence[str]) -> int:
    """Run LightningCLI with ``argv`` (sub-command first), resolving packaged config names.

    The task (``model``) and data module (``data``) are given as ``class_path`` +
    ``init_args`` in the YAML, so one command trains either stage of SAP.
    """
    args = resolve_config_argument(list(argv))
    check_linked_arguments(args)
    signals = SignalCheckpoint()
    try:
        with warnings.catch_warnings():
            # sap passes the command line itself (packaged config names resolved).
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            SapLightningCLI(
                args=args,
                trainer_defaults={"callbacks": [RandomState(), signals, FinalValidation()]},
            )
    except ArgumentError as error:
        raise ConfigError(f"sap {args[0]}: {summarise_parse_error(str(error))}") from error
    except SIGTERMException as stop:
        raise _interrupted(signals) from stop
    return 0


def check_linked_arguments(args: Sequence[str]) -> None:
    """Refuse ``--data.patch_size`` / ``--data.channels`` (and their copies in config files).

    They are set from ``--model.patch_size`` / ``--model.channels``: a second copy could only
    disagree (LightningCLI would silently prefer the model's).
    """
    for index, arg in enumerate(args):
        for name in LINKED_ARGUMENTS:
            if re.fullmatch(rf"--data\.(init_args\.)?{name}(=.*)?", arg):
                raise ConfigError(_linked_message(name, f"the option {arg.split('=')[0]}"))
        if arg in ("--config", "-c") and index + 1 < len(args):
            path = Path(args[index + 1])
            if path.is_file():
                config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
                data = config.get("data") if isinstance(config, dict) else None
                init_args = (data or {}).get("init_args", data) if isinstance(data, dict) else {}
                for name in LINKED_ARGUMENTS:
                    if isinstance(init_args, dict) and name in init_args:
                        raise ConfigError(_linked_message(name, f"{path} (data.init_args.{name})"))


def _linked_message(name: str, where: str) -> str:
    return (
        f"{name} is declared once, on the model, and the data module takes it from there: "
        f"remove {where} and set --model.{name} (or model.init_args.{name} in the config)."
    )


def summarise_parse_error(text: str) -> str:
    r"""The innermost problem of a jsonargparse error, as ``option: problem``.

    >>> summarise_parse_error('Parser key "model":\n  Errors:\n'
    ...     "    - Problem with given class_path 'sap.tasks.LesionFinetuning':\n"
    ...     '        Parser key "lr_encoder":\n          Expected a <class \'float\'>. Got value: abc')
    'model.lr_encoder: Expected a float. Got value: abc'
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    keys: list[str] = []
    problem, class_path = (lines[0] if lines else text), None
    following = iter(enumerate(lines))
    for index, line in following:
        key = re.match(r'(?:- )?Parser key "([^"]+)":?\s*(.*)', line)
        given = re.match(r"- Problem with given class_path '([\w.]+)':?", line)
        if key:
            keys.append(key.group(1))
            problem = key.group(2) or (lines[index + 1] if index + 1 < len(lines) else "")
        elif given:
            class_path = given.group(1)
            problem = lines[index + 1] if index + 1 < len(lines) else problem
            if not problem.startswith("Parser key"):
                break
    problem = re.sub(r"<class '([\w.]+)'>", r"\1", problem)
    problem += _close_option_hint(problem, class_path)
    option = ".".join(dict.fromkeys(k for key in keys for k in key.split(".")))
    return f"{option}: {problem}" if option else problem


def _close_option_hint(problem: str, class_path: str | None) -> str:
    """``" Did you mean 'x'?"`` for an unknown option of ``class_path``, or ``""``."""
    unknown = re.search(r"Option '(\w+)' is not accepted", problem)
    if not unknown or not class_path:
        return ""
    import difflib
    import importlib
    import inspect

    module_name, _, name = class_path.rpartition(".")
    try:
        parameters = inspect.signature(getattr(importlib.import_module(module_name), name))
    except (ImportError, AttributeError, TypeError, ValueError):
        return ""
    close = difflib.get_close_matches(unknown.group(1), list(parameters.parameters), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _interrupted(signals: SignalCheckpoint) -> UserError:
    """The error a signal-stopped run ends with: which signal, where its checkpoint is."""
    signum = signals.stopped_by or signal.SIGTERM
    name = signal.Signals(signum).name
    if signals.checkpoint is None:
        where = "no checkpoint was written (stopped before the first training step)"
    else:
        where = (
            f"last checkpoint: {signals.checkpoint}. Resume by running the same command with "
            "--ckpt_path last (or --ckpt_path with that file)"
        )
    return RunInterrupted(f"Training stopped by {name}; {where}.", exit_status=128 + int(signum))


class RunConfig(SaveConfigCallback):
    """Writes the resolved config next to the run's checkpoints; sends it to W&B."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "save_to_log_dir": False})

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        write_text_atomic(run_directory(trainer) / self.config_filename, text)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update(
                    {"sap": yaml.safe_load(text)}, allow_val_change=True
                )


class SapLightningCLI(LightningCLI):
    """LightningCLI with sap's links, checks, callbacks and config saving (module docstring)."""

    def __init__(self, args: list[str], trainer_defaults: dict[str, Any]) -> None:
        super().__init__(
            L.LightningModule,  # a SegmentationTask or the SSL baseline (no segmentation task)
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            save_config_callback=RunConfig,
            save_config_kwargs={"overwrite": True},
            trainer_defaults=trainer_defaults,
            parser_kwargs={"prog": "sap", "exit_on_error": False},
        )

    def add_arguments_to_parser(self, parser: Any) -> None:
        for name in LINKED_ARGUMENTS:
            parser.link_arguments(
                f"model.init_args.{name}", f"data.init_args.{name}", apply_on="parse"
            )

    def parse_arguments(self, parser: Any, args: Any) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        if subcommand == "fit":
            check_training_length(config.trainer.max_epochs, config.trainer.max_steps)
        path = resolve_checkpoint_path(config.get("ckpt_path"), _search_roots(config))
        if path is not None:
            # A sap checkpoint, before LightningCLI reads its hyper-parameters.
            read_checkpoint(path, mmap=True)
            config.ckpt_path = str(path)

    def instantiate_classes(self) -> None:
        ckpt_path = self.config[self.subcommand].get("ckpt_path") if self.subcommand else None
        with restoring_weights() if ckpt_path else nullcontext():
            super().instantiate_classes()

    def _check_checkpoint(self) -> None:
        ckpt_path = self.config_init[self.subcommand].get("ckpt_path")
        if ckpt_path:
            check_checkpoint_fits(ckpt_path, self.model.recipe())
        check_data_matches(self.model, self.datamodule, ckpt_path or "")

    def before_fit(self) -> None:
        self._check_checkpoint()

    def before_validate(self) -> None:
        self._check_checkpoint()

    def before_test(self) -> None:
        self._check_checkpoint()

    def after_validate(self) -> None:
        _require_cases(self.trainer.num_val_batches, "validate", "validation")

    def after_test(self) -> None:
        _require_cases(self.trainer.num_test_batches, "test", "test")


def _search_roots(config: Any) -> list[Path]:
    """Folders whose ``checkpoints`` sub-folders ``--ckpt_path last`` searches."""
    trainer = config.trainer
    roots = [Path(trainer.default_root_dir or ".")]
    loggers = trainer.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        save_dir = _init_arg(logger, "save_dir")
        if save_dir:
            roots.append(Path(save_dir))
    for callback in trainer.get("callbacks") or []:
        dirpath = _init_arg(callback, "dirpath")
        if dirpath:
            roots.append(Path(dirpath))
    return list(dict.fromkeys(roots))


def _init_arg(component: Any, name: str) -> Any:
    init_args = getattr(component, "init_args", None) if component is not None else None
    return getattr(init_args, name, None) if init_args is not None else None


def _require_cases(batch_counts: Sequence[int] | int, command: str, split: str) -> None:
    counts = batch_counts if isinstance(batch_counts, list | tuple) else [batch_counts]
    if not sum(int(c) for c in counts):
        raise UserError(
            f"sap {command} ran on no case: the data module gave no {split} cases. Give "
            "--data.test_dir (a folder of test cases), or a --data.val_fraction / "
            "--data.val_cases that leaves cases for validation (test uses them without test_dir)."
        )
