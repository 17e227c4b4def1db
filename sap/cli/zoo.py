"""``sap zoo``: list, export, push, pull and import models (see :mod:`sap.zoo`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "zoo",
        help="list, export, share (Hugging Face Hub) and import pretrained models",
        description=(
            "The sap model zoo. A model is an export folder (model.safetensors + config.json + "
            "README.md model card). HF_ENDPOINT, HF_HUB_OFFLINE and HF_HUB_CACHE are honoured."
        ),
    )
    commands = parser.add_subparsers(dest="zoo_command", metavar="SUBCOMMAND", required=True)
    for add in (_add_list, _add_export, _add_push, _add_pull, _add_import_reference):
        add(commands)
    parser.set_defaults(func=run)


def _add_list(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("list", help="models in the zoo, with task, size and source")
    p.add_argument(
        "pattern", nargs="?", default="*", help="shell-style name pattern (default: all)"
    )
    p.add_argument("--task", choices=("skeleton", "lesion"), help="only models of this task")
    p.add_argument("--json", action="store_true", help="print the catalogue entries as JSON")
    p.add_argument(
        "--write-readme",
        type=Path,
        metavar="PATH",
        help="write the zoo README (table of the model_zoo/*.yaml entries) to PATH instead of listing",
    )


def _add_export(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("export", help="Lightning checkpoint -> export folder")
    p.add_argument("checkpoint", type=Path, help="a .ckpt written while training a sap task")
    p.add_argument("out", type=Path, help="export folder to create")
    p.add_argument("--name", default="", help="zoo name of the model")
    p.add_argument("--description", default="", help="one paragraph for the model card")
    p.add_argument("--training-data", default="", help="what the model was trained on")
    p.add_argument("--num-cases", type=int, help="number of training cases")
    p.add_argument("--synthetic", action="store_true", help="trained on synthetic phantoms")
    p.add_argument(
        "--metric",
        action="append",
        default=[],
        type=_metric,
        metavar="NAME=VALUE",
        help="a metric for the model card (repeatable)",
    )
    p.add_argument(
        "--metrics-description", default="", help="where and how the metrics were measured"
    )
    p.add_argument("--license", default="apache-2.0", help="licence id of the weights")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export folder")


def _add_push(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("push", help="upload an export folder to a Hub repository")
    p.add_argument("folder", type=Path, help="export folder")
    p.add_argument("repo_id", help="owner/name")
    p.add_argument("--revision", help="branch to commit to (default: main; created if missing)")
    p.add_argument("--message", help="commit message")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN or the saved login)")


def _add_pull(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "pull", help="download a model from the Hub into the cache and verify it"
    )
    p.add_argument("repo_id", help="owner/name (or hf://owner/name@revision)")
    p.add_argument("--revision", help="branch, tag or commit (default: main); pin a commit")
    p.add_argument(
        "--offline", action="store_true", help="use the cache only (like HF_HUB_OFFLINE=1)"
    )
    p.add_argument(
        "--force-download", action="store_true", help="download again, repairing a damaged cache"
    )
    p.add_argument("--cache-dir", type=Path, help="Hugging Face cache folder")
    p.add_argument("--token", help="Hub token for private repositories")
    p.add_argument(
        "--list-revisions", action="store_true", help="list the commits of the branch instead"
    )


def _add_import_reference(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "import-reference", help="convert a checkpoint of the SAP reference code (MONAI SwinUNETR)"
    )
    p.add_argument("checkpoint", type=Path, help=".pt/.pth/.ckpt of the reference scripts")
    p.add_argument("out", type=Path, help="export folder to create")
    p.add_argument(
        "--task", required=True, choices=("skeleton", "lesion"), help="10-class or 2-class model"
    )
    p.add_argument("--channels", nargs="+", help="input channel names in order (default: T1 b1000)")
    p.add_argument("--name", default="", help="zoo name of the model")
    p.add_argument("--description", default="", help="one paragraph for the model card")
    p.add_argument(
        "--no-check", action="store_true", help="skip the forward-pass check against MONAI"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing export folder")


def run(args: argparse.Namespace) -> int:
    from sap.zoo import HubError, UnknownModelError

    handlers = {
        "list": _list,
        "export": _export,
        "push": _push,
        "pull": _pull,
        "import-reference": _import_reference,
    }
    try:
        return handlers[args.zoo_command](args)
    # The zoo's own errors are ValueErrors (config, card, weights, export, reference import),
    # HubErrors or UnknownModelError; each message already says what to do.
    except (ValueError, HubError, UnknownModelError, FileExistsError, FileNotFoundError) as error:
        print(f"sap zoo {args.zoo_command}: {error}", file=sys.stderr)
        return 1


def _list(args: argparse.Namespace) -> int:
    from sap.zoo import list_models
    from sap.zoo.catalogue import entry_to_dict
    from sap.zoo.catalogue_readme import format_zoo_listing, write_zoo_readme

    if args.write_readme:
        zoo = write_zoo_readme(args.write_readme)
        print(f"wrote {args.write_readme} ({len(zoo)} models)")
        return 0
    entries = list_models(args.pattern, task=args.task)
    if args.json:
        print(json.dumps([entry_to_dict(entry) for entry in entries], indent=2))
    elif entries:
        print(format_zoo_listing(entries))
    elif not list_models():
        print(
            "The zoo is empty: `python model_zoo/train_phantom_models.py` makes the bundled demo models."
        )
    else:
        task = f" with task {args.task!r}" if args.task else ""
        print(f"No model matches {args.pattern!r}{task}.")
    return 0


def _metric(text: str) -> tuple[str, float]:
    """``NAME=NUMBER`` of ``--metric``."""
    name, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        sep = ""
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME=NUMBER, e.g. --metric whole_skeleton_dice=0.91"
        )
    return name.strip(), number


def _export(args: argparse.Namespace) -> int:
    from sap.zoo import TrainingData, export_checkpoint
    from sap.zoo.export import describe_export

    out = export_checkpoint(
        args.checkpoint,
        args.out,
        name=args.name,
        description=args.description,
        training_data=TrainingData(args.training_data, args.synthetic, args.num_cases),
        metrics=dict(args.metric),
        metrics_description=args.metrics_description,
        license=args.license,
        overwrite=args.overwrite,
    )
    print(describe_export(out))
    return 0


def _push(args: argparse.Namespace) -> int:
    from sap.zoo import push_to_hub

    result = push_to_hub(
        args.folder,
        args.repo_id,
        revision=args.revision,
        commit_message=args.message,
        private=True if args.private else None,
        token=args.token,
    )
    print(f"pushed {args.folder} to {result.repo_id} (branch {result.branch})")
    print(f"commit: {result.commit}")
    print(f"load it with: load_pretrained({result.uri!r})")
    return 0


def _pull(args: argparse.Namespace) -> int:
    if args.list_revisions:
        from sap.zoo import list_revisions

        for item in list_revisions(args.repo_id, args.revision, token=args.token):
            print(f"{item.commit}  {item.date:%Y-%m-%d %H:%M}  {item.title}")
        return 0
    from sap.zoo.load import pull_and_verify

    folder, config = pull_and_verify(
        args.repo_id,
        args.revision,
        local_files_only=True if args.offline else None,
        force_download=args.force_download,
        cache_dir=args.cache_dir,
        token=args.token,
    )
    weights = config.weights
    print(f"{folder}")
    print(
        f"verified: {config.name or args.repo_id} ({config.task}, {config.recipe.backbone}, "
        f"{weights.num_parameters:,} parameters, sha256 {weights.sha256[:12]}...)"
    )
    return 0


def _import_reference(args: argparse.Namespace) -> int:
    from sap.zoo import import_reference_checkpoint
    from sap.zoo.export import describe_export

    result = import_reference_checkpoint(
        args.checkpoint,
        args.task,
        args.out,
        channels=args.channels,
        name=args.name,
        description=args.description,
        check=not args.no_check,
        overwrite=args.overwrite,
    )
    if result.max_abs_diff is not None:
        print(f"forward check passed: max |ours - MONAI SwinUNETR| = {result.max_abs_diff:.3g}")
    if result.filled_buffers:
        print(f"filled {len(result.filled_buffers)} non-learned buffer(s) absent from the file")
    print(describe_export(result.folder))
    return 0
