"""The ``videopanda`` command: one entry point, one subcommand per job.

Each subcommand lives in the package that owns it and is imported only when used, so ``videopanda --help``
is fast and ``videopanda eval ...`` never imports DeepSpeed.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module with a ``main(argv) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("videopanda.quickstart", "synthesise data, train the tiny model, evaluate it (the main job)"),
    "summary": ("videopanda.model.summary", "build a model from a config, run a tiny forward pass, print a summary"),
    "data": ("videopanda.data.__main__", "data tools: `data synth` (synthetic VideoQA), `data check` (validate JSON)"),
    "train": ("videopanda.train.__main__", "train a stage: `train CONFIG.yaml [key.sub=value ...]`"),
    "eval": ("videopanda.eval.__main__", "evaluate: `eval generate|judge|aggregate ...`"),
    "convert": ("videopanda.model.convert", "convert an EVE-7B or official Video-Panda checkpoint"),
    "chat": ("videopanda.chat", "chat about a video in the terminal"),
    "plot": ("videopanda.plots", "plots: `plot efficiency CSV`, `plot run RUN_DIR`"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: videopanda COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `videopanda COMMAND --help` for the options of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(_usage() + "\n")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        sys.stderr.write(f"videopanda: unknown command {name!r}\n\n{_usage()}\n")
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
