"""``python -m pipeline serve|process|upload``: the local stack, the batch CLI, or uploads
through the API."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="ImagePipe local tools")
    parser.add_argument(
        "command",
        choices=["serve", "process", "upload"],
        help="serve: run the local stack; "
        "process: batch-process images (see `python -m pipeline process --help`); "
        "upload: send files and folders through the API (see `python -m pipeline upload --help`)",
    )
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    args = parser.parse_args(argv[:1])
    if args.command == "serve":
        from pipeline.stack.serve import main as serve_main

        return serve_main(argv[1:])
    if args.command == "upload":
        from pipeline.upload_cli import main as upload_main

        return upload_main(argv[1:])
    from pipeline.cli import main as cli_main  # written by the CLI's owner; imported only when used

    return int(cli_main(argv[1:]) or 0)


if __name__ == "__main__":
    _argv = sys.argv[1:]
    if _argv[:1] == ["process"]:  # the batch CLI as a program (pipeline/cli.py for both)
        from pipeline.cli import exit_now, single_threaded_blas

        single_threaded_blas()  # before the engine (numpy) is imported
        exit_now(main(_argv))  # the batch is over: skip the interpreter's teardown
    raise SystemExit(main(_argv))
