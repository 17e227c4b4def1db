"""``sap configs list|show NAME``: the training recipes packaged with sap."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("configs", help="list or print the packaged training configs")
    parser.add_argument("action", choices=["list", "show", "path"], help="what to do")
    parser.add_argument("name", nargs="?", help="config name (for show / path)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sap.configs import config_path, list_configs
    from sap.errors import UserError

    if args.action == "list":
        for name in list_configs():
            print(name)
        return 0
    if not args.name:
        raise UserError(f"give a config name; one of {', '.join(list_configs())}.")
    path = config_path(args.name)
    print(path.read_text(encoding="utf-8") if args.action == "show" else path)
    return 0
