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

    p = commands.add_parser("list", help="models in the zoo, with task, size and source")
    p.add_argument(
        "pattern", nargs="?", default="*", help="shell-style name pattern (default: all)"
    )
    p.add_argument("--task", choices=("skeleton", "lesion"), help="only models of this task")
    p.add_argument("--json", action="store_true", help="print the cards as JSON")
    p.add_argument(
        "--write-readme",
        type=Path,
        metavar="PATH",
        help="write the zoo README (table of the model_zoo/*.yaml cards) to PATH instead of listing",
    )

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
        metavar="NAME=VALUE",
        help="a metric for the card (repeatable)",
    )
    p.add_argument(
        "--metrics-description", default="", help="where and how the metrics were measured"
    )
    p.add_argument("--license", default="apache-2.0", help="licence id of the weights")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export folder")

    p = commands.add_parser("push", help="upload an export folder to a Hub repository")
    p.add_argument("folder", type=Path, help="export folder")
    p.add_argument("repo_id", help="owner/name")
    p.add_argument("--revision", help="branch to commit to (default: main; created if missing)")
    p.add_argument("--message", help="commit message")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN or the saved login)")

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

    parser.set_defaults(func=run)


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
    from sap.zoo.registry import ModelZoo, card_to_dict, render_zoo_readme

    if args.write_readme:
        from sap.io import write_text_atomic

        cards = ModelZoo.from_directory(ModelZoo.card_directory())  # the cards, not their fallbacks
        write_text_atomic(args.write_readme, render_zoo_readme(cards))
        print(f"wrote {args.write_readme} ({len(cards)} models)")
        return 0
    zoo = ModelZoo.default()
    cards = zoo.list(args.pattern, task=args.task)
    if args.json:
        print(json.dumps([card_to_dict(card) for card in cards], indent=2))
        return 0
    if not cards and not len(zoo):
        print(
            "The zoo is empty: `python model_zoo/train_phantom_models.py` makes the bundled demo models."
        )
        return 0
    if not cards:
        print(
            f"No model matches {args.pattern!r}"
            + (f" with task {args.task!r}" if args.task else "")
            + "."
        )
        return 0
    rows = [("name", "task", "backbone", "size", "source")]
    for card in cards:
        size = f"{card.size_bytes / 1e6:.2f} MB" if card.size_bytes else "?"
        rows.append((card.name, card.task, card.backbone, size, card.source))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _export(args: argparse.Namespace) -> int:
    from sap.zoo import TrainingData, export_checkpoint

    metrics = {}
    for item in args.metric:
        name, sep, value = item.partition("=")
        try:
            metrics[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ValueError(
                f"--metric {item!r}: expected NAME=NUMBER, e.g. --metric whole_skeleton_dice=0.91"
            )
    out = export_checkpoint(
        args.checkpoint,
        args.out,
        name=args.name,
        description=args.description,
        training_data=TrainingData(args.training_data, args.synthetic, args.num_cases),
        metrics=metrics,
        metrics_description=args.metrics_description,
        license=args.license,
        overwrite=args.overwrite,
    )
    _print_export(out)
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
    from sap.zoo import list_revisions, load_export, pull_from_hub
    from sap.zoo.hub import HF_URI_PREFIX, parse_hf_uri

    repo_id, revision = args.repo_id, args.revision
    if repo_id.startswith(HF_URI_PREFIX):
        location = parse_hf_uri(repo_id)
        repo_id, revision = location.repo_id, revision or location.revision
    if args.list_revisions:
        for item in list_revisions(repo_id, revision or "main", token=args.token):
            print(f"{item.commit}  {item.date:%Y-%m-%d %H:%M}  {item.title}")
        return 0
    folder = pull_from_hub(
        repo_id,
        revision,
        local_files_only=True if args.offline else None,
        force_download=args.force_download,
        cache_dir=args.cache_dir,
        token=args.token,
    )
    model, config = load_export(folder)  # verifies the sha256 and that the weights fit
    print(f"{folder}")
    print(
        f"verified: {config.name or repo_id} ({config.task}, {config.recipe.backbone}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters, sha256 {config.weights.sha256[:12]}...)"
    )
    return 0


def _import_reference(args: argparse.Namespace) -> int:
    from sap.zoo import import_reference_checkpoint

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
    _print_export(result.folder)
    return 0


def _print_export(folder: Path | None) -> None:
    from sap.zoo import read_config

    if folder is None:
        return
    config = read_config(folder)
    weights = config.weights
    print(f"wrote {folder}")
    if weights is not None:
        print(
            f"  model.safetensors: {weights.size_bytes / 1e6:.2f} MB, {weights.num_parameters:,} parameters"
        )
        print(f"  sha256: {weights.sha256}")
