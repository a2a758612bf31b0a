"""The ``mixformer`` command line: thin subcommands that call the library.

Each subcommand lives in its own module of this package and exposes
``register(subparsers) -> None``; the module adds a parser whose ``func`` default takes the parsed
``argparse.Namespace`` and returns an exit code. Add new modules to ``_COMMAND_MODULES``.
Errors a user can fix (bad box, missing file, ...) raise :class:`CLIError` or ``ValueError`` and
end with a one-line message and exit code 2; so does any ``OSError`` (a read-only folder, a path
under a file, a full disk), printed as ``PATH: reason``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Sequence

_COMMAND_MODULES = (
    "mixformer.cli.track",
    "mixformer.cli.models",
    "mixformer.cli.demo",
    "mixformer.cli.evaluate",
    "mixformer.cli.train",
    "mixformer.cli.distill",
    "mixformer.cli.vot",
    "mixformer.cli.benchmark_multi",
    "mixformer.cli.export",
    "mixformer.cli.benchmark",
    "mixformer.cli.data",
    "mixformer.cli.app",
)


class CLIError(Exception):
    """An error caused by the user's input; printed without a traceback, exit code 2."""


class Terminated(KeyboardInterrupt):
    """Raised by a SIGTERM handler (see ``mixformer track``): stop like Ctrl-C, exit code 143.

    Its message, if any, follows ``terminated: `` on the one line printed."""


def os_error_message(exc: OSError) -> str:
    """One line for an ``OSError``: ``PATH: reason`` (``PATH -> PATH2: reason`` for a rename)."""
    if exc.filename is None or not exc.strerror:
        return exc.strerror or str(exc) or type(exc).__name__
    where = str(exc.filename)
    if exc.filename2 is not None:
        where += f" -> {exc.filename2}"
    return f"{where}: {exc.strerror}"


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` that shows every option's default, unless its text already names it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if text is None or "default" in text or not action.option_strings:
            return text
        if action.default in (None, False, argparse.SUPPRESS) or action.default == []:
            return text
        return f"{text} (default: %(default)s)"


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and every sub-command's parser :class:`HelpFormatter`; an option without
    help text gets its default as its help, so ``--help`` lists it with a value."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _show_defaults(child)
        elif action.help is None and action.option_strings and action.default is not None:
            action.help = "(default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered subcommand."""
    from mixformer import __version__

    parser = argparse.ArgumentParser(
        prog="mixformer",
        description="MixFormer visual object tracker: track, evaluate, train, export.",
    )
    parser.add_argument("--version", action="version", version=f"mixformer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _show_defaults(parser)
    return parser


def attach_negative_values(argv: Sequence[str]) -> list[str]:
    """``--opt -5,-5,40,40`` -> ``--opt=-5,-5,40,40``.

    argparse takes a value that starts with ``-`` and is not a plain number (a box such as
    ``-50,-50,100,100``) for an option and reports a missing value; joined with ``=`` it parses.
    """
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--":
            out.extend(args[i:])
            break
        nxt = args[i + 1] if i + 1 < len(args) else ""
        if (
            tok.startswith("--")
            and "=" not in tok
            and re.match(r"-\.?\d", nxt)
            and re.search(r"[,\s]", nxt)
        ):
            out.append(f"{tok}={nxt}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mixformer`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(
        attach_negative_values(sys.argv[1:] if argv is None else argv)
    )
    # key=value overrides after an option (`train PRESET --output X lr=1e-3`): argparse does not
    # intermix positionals, so they arrive here; commands with overrides take them.
    if extra and isinstance(getattr(args, "overrides", None), list):
        if all("=" in tok and not tok.startswith("-") for tok in extra):
            args.overrides.extend(extra)
            extra = []
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (CLIError, ValueError, OSError, KeyError) as exc:
        if isinstance(exc, KeyError) and exc.args:
            msg = exc.args[0]
        elif isinstance(exc, OSError):
            msg = os_error_message(exc)
        else:
            msg = exc
        print(f"mixformer {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except Terminated as exc:
        print("terminated" + (f": {exc}" if str(exc) else ""), file=sys.stderr)
        return 143
    except KeyboardInterrupt as exc:
        print("interrupted" + (f": {exc}" if str(exc) else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
