"""``ecg-grounding``: one command, one subcommand per stage, one convention for all of them.

Each stage module exposes ``register(subparsers)`` which adds its subcommand and sets ``func`` to a
function ``(args) -> int`` (the exit code). Adding a stage = adding its module to ``STAGE_MODULES``.

The convention (issue 18), applied here to every subcommand so no stage can miss it:
- exit codes: 0 done, 1 some records failed (printed by reason code, with the errors tables), 2 bad usage;
- bad usage is one line on stderr, never a traceback (argparse errors and ``ConfigError`` alike);
- ``--json`` prints a machine-readable summary on stdout, otherwise the output is plain text;
- global ``-v`` / ``-q`` (before or after the subcommand) set ``ECG_GROUNDING_VERBOSITY`` to 1 / -1 (0 by
  default) and the logging level before any stage runs; progress code reads the variable;
- help texts are plain text: docstring markup (````x````, ``:func:`x```) is stripped.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import sys

VERBOSITY_ENV = "ECG_GROUNDING_VERBOSITY"

# Modules are imported when the parser is built; their heavy imports happen inside their functions.
STAGE_MODULES: list[str] = [
    "pipeline.synth_cli",      # synth: the embedded synthetic generator
    "pipeline.ingest",         # ingest: sources -> manifest + errors
    "features.cli",            # features: beats / records Parquet
    "pipeline.render",         # render: 12-lead PNG / SVG images
    "pipeline.prompts",        # prompts: knowledge-guided prompts with exact token counts
    "pipeline.generate",       # generate: LLM or rules answers (durable response store)
    "pipeline.validate",       # validate: grounding checks -> GEM instruction set
    "pipeline.run_all",        # run: the whole chain (what `make demo` calls)
    "pipeline.export",         # export: one GEM / LLaVA JSON file for a trainer
    "gem_model.cli",           # train, interpret: GEM on the instruction set
    "gem_model.evaluate",      # evaluate: interpretations scored against a run (judge-free + GEM's judge)
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EPILOG = ("Exit status: 0 done; 1 some records failed (listed by reason code, with the errors tables); "
          "2 bad usage (one line on stderr, nothing run). Global flags: -v / -q, --json.")


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: 'ecg-grounding features: argument --chunk-size: ...' and exit 2."""

    def error(self, message: str):  # noqa: D102 - argparse API
        message = " ".join(message.split())
        if "invalid choice" in message:
            near = _near_choice(message)
            if near:
                message += f" (did you mean {near}?)"
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _near_choice(message: str) -> str | None:
    import difflib

    m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if not m:
        return None
    choices = re.findall(r"'([^']*)'", m.group(2)) or [c.strip() for c in m.group(2).split(",")]
    near = difflib.get_close_matches(m.group(1), choices, n=1)
    return near[0] if near else None


# ----------------------------------------------------------------------------------------- plain help
_MARKUP = [
    (re.compile(r":[a-z]+:`~?([^`]+)`"), r"\1"),   # :func:`x`, :class:`~a.b`
    (re.compile(r"``([^`]+)``"), r"\1"),           # ``literal``
    (re.compile(r"`([^`]+)`_?"), r"\1"),           # `x`, `link`_
    (re.compile(r"\*\*([^*]+)\*\*"), r"\1"),       # **bold**
]


def plain(text: str | None) -> str | None:
    """``text`` without reStructuredText / Markdown inline markup (help is read in a terminal)."""
    if not text:
        return text
    for pattern, repl in _MARKUP:
        text = pattern.sub(repl, text)
    return text


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ecg-grounding")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown (not installed)"


def add_common_flags(p: argparse.ArgumentParser) -> None:
    """``--json``, ``-v`` and ``-q`` on a subcommand (those it does not define itself). Defaults are
    suppressed so that flags given before the subcommand are not reset by the subcommand's parser."""
    have = {s for a in p._actions for s in a.option_strings}
    if "--json" not in have:
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="print a machine-readable JSON summary on stdout (otherwise plain text)")
    if "-v" not in have and "--verbose" not in have:
        p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                       help="more output: log INFO messages (same as the global -v)")
    if "-q" not in have and "--quiet" not in have:
        p.add_argument("-q", "--quiet", action="count", default=argparse.SUPPRESS,
                       help="less output: no progress and no summary text, only failures and errors")


class HelpFormatter(argparse.HelpFormatter):
    """Paragraphs wrapped to the terminal; indented lines (examples) kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        paragraphs = []
        for para in text.split("\n\n"):
            lines = para.splitlines()
            if any(line.startswith("  ") for line in lines):
                head = [ln for ln in lines if not ln.startswith("  ")]
                body = [indent + ln for ln in lines if ln.startswith("  ")]
                paragraphs.append("\n".join([indent + h for h in head] + body))
            else:
                paragraphs.append(textwrap.fill(" ".join(para.split()), width, initial_indent=indent,
                                                subsequent_indent=indent))
        return "\n\n".join(paragraphs)


def _polish(p: argparse.ArgumentParser) -> None:
    """Plain-text help, a description and the exit-status epilog on a subcommand."""
    p.description = plain(p.description) or plain(getattr(p, "_help_line", None)) or p.prog
    p.epilog = plain(p.epilog) or EPILOG
    p.formatter_class = HelpFormatter
    for action in p._actions:
        action.help = plain(action.help) if isinstance(action.help, str) else action.help


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ecg-grounding",
        description="Regenerate GEM's ECG-Grounding data: ingest, measure, render, prompt, generate, validate.",
        epilog=EPILOG, formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ecg-grounding {_version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more output (INFO log messages)")
    parser.add_argument("-q", "--quiet", action="count", default=0,
                        help="less output: no progress and no summary text, only failures and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in STAGE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # stage not built yet: leave it out rather than break every other command
                continue
            raise
        module.register(sub)
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, p in sub.choices.items():
        p._help_line = helps.get(name)
        add_common_flags(p)
        _polish(p)
    return parser


# --------------------------------------------------------------------------------------- verbosity, output
def verbosity() -> int:
    """-1 (quiet), 0 (default) or 1 (verbose), as the global flags set it (``ECG_GROUNDING_VERBOSITY``)."""
    try:
        return max(-1, min(1, int(os.environ.get(VERBOSITY_ENV, "0"))))
    except ValueError:
        return 0


def set_verbosity(level: int) -> int:
    """Set ``ECG_GROUNDING_VERBOSITY`` and the logging level (-1: ERROR, 0: WARNING, 1: INFO)."""
    level = max(-1, min(1, int(level)))
    os.environ[VERBOSITY_ENV] = str(level)
    log_level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}[level]
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(log_level)
    return level


def _args_verbosity(args: argparse.Namespace) -> int | None:
    """1 for -v, -1 for -q, None for both (a usage error); neither: the environment's setting (a scheduler or a
    parent process may have set ``ECG_GROUNDING_VERBOSITY``), else 0."""
    v, q = getattr(args, "verbose", 0) or 0, getattr(args, "quiet", 0) or 0
    return None if v and q else 1 if v else -1 if q else verbosity()


_JSON_STDOUT = False  # set by main for --json: stdout then carries the JSON document only


def say(text: str) -> None:
    """Plain-text output for people: printed unless -q (on stderr under --json, so stdout stays JSON)."""
    if verbosity() >= 0:
        print(text, file=sys.stderr if _JSON_STDOUT else sys.stdout, flush=True)


def finish(args: argparse.Namespace, payload: dict, text: str, failures=None) -> int:
    """Print a stage's result the one way every command does, and return its exit code.

    ``--json``: ``payload`` (plus ``failures``) as JSON on stdout; otherwise ``text`` unless -q. Failed records
    go to stderr by reason code (top 5) with the errors tables, and make the exit code 1.
    """
    if failures is not None:
        payload = {**payload, "failures": failures.to_dict()}
    if getattr(args, "json", False):
        print(json.dumps(payload, indent=2, default=str), flush=True)
    elif verbosity() >= 0:
        print(text, flush=True)
    if failures is not None and failures.n_failed:
        print(f"{args.command}: {failures.format()}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    level = _args_verbosity(args)
    if level is None:
        print(f"ecg-grounding {args.command}: -v and -q contradict each other (see ecg-grounding --help)",
              file=sys.stderr)
        return EXIT_USAGE
    set_verbosity(level)
    args.verbose, args.quiet = verbosity() > 0, verbosity() < 0
    args.json = getattr(args, "json", False)
    global _JSON_STDOUT
    _JSON_STDOUT = bool(args.json)
    from pipeline.record import ConfigError

    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:  # TableError and LLMConfigError too: one line, nothing more run
        print(f"ecg-grounding {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"ecg-grounding {args.command}: interrupted (finished chunks are kept; re-run to resume)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())


# ------------------------------------------------------------------------------------- shared flag sets
def add_source_args(p: argparse.ArgumentParser, required: bool = True, default: str | None = None) -> None:
    """``--source`` (with its choices), ``--root`` and the source options, the same on every command that
    reads a source."""
    from pipeline.preflight import nonneg_float, positive_float
    from pipeline.sources import SOURCE_NAMES

    p.add_argument("--source", required=required and default is None, default=default, choices=SOURCE_NAMES,
                   help="source layout" + (f" (default {default})" if default else ""))
    p.add_argument("--root", required=required and default is None, default=None,
                   help="the source's data root (for synthetic: a tree written by `ecg-grounding synth`)")
    p.add_argument("--window-s", type=positive_float, default=None,
                   help="seconds kept per record (default 10; not for synthetic)")
    p.add_argument("--window-start-s", type=nonneg_float, default=None,
                   help="where the window starts, s (default 0; not for synthetic)")
    p.add_argument("--option", action="append", default=[], type=_parse_option, metavar="KEY=VALUE",
                   help="extra source option (JSON value), repeatable")


def _parse_option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--option wants KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def source_options_from(args: argparse.Namespace) -> dict:
    """The checked source options of ``add_source_args`` flags (``ConfigError`` for a bad combination)."""
    from pipeline.preflight import source_options

    return source_options(args.source, getattr(args, "window_s", None), getattr(args, "window_start_s", None),
                          dict(getattr(args, "option", None) or []))
