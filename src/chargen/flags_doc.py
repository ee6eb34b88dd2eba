"""``docs/flags.md``: every flag of every command, with its default and help, from the parser
itself (as torch-rnn's ``doc/flags.md``). A test fails when the file is stale; regenerate it with
``python -m chargen.flags_doc > docs/flags.md``."""

from __future__ import annotations

import argparse
import dataclasses

from chargen.config import DataConfig, ModelConfig, TrainConfig
from chargen.fields import is_flag
from chargen.sampling_config import SamplingConfig

FIELD_DEFAULTS = {
    f.name: f.default
    for cls in (DataConfig, ModelConfig, TrainConfig, SamplingConfig)
    for f in dataclasses.fields(cls)
    if is_flag(f)
}
MODEL_AND_TRAIN = {f.name for cls in (ModelConfig, TrainConfig) for f in dataclasses.fields(cls)}


def _default(action: argparse.Action, command: str) -> str:
    """The value a flag has when it is not given: the field's for a configuration field (for
    ``train``: before the preset's own values), else argparse's."""
    value = action.default
    if value is None and action.option_strings and action.dest in FIELD_DEFAULTS:
        value = FIELD_DEFAULTS[action.dest]
        if command == "train" and action.dest in MODEL_AND_TRAIN and value is not None:
            return f"{_show(value)} (or the preset's)"
    if value is None or value is argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
        return ""
    return _show(value)


def _show(value: object) -> str:
    if isinstance(value, tuple | list):
        return " ".join(_show(v) for v in value)
    text = repr(value) if isinstance(value, str) else str(value)
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def _cell(text: str | None) -> str:
    return (text or "").replace("%%", "%").replace("|", "\\|").replace("\n", " ")


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The Markdown of ``docs/flags.md`` for ``parser`` (default: chargen's)."""
    if parser is None:
        from chargen.cli import build_parser

        parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    lines = [
        "# chargen's flags",
        "",
        "Every flag of every command, with its default and its help. Generated from the parser by",
        "`python -m chargen.flags_doc > docs/flags.md` (a test fails when this file is stale).",
        "A configuration field's help and default live with the field (`chargen/config.py`,",
        "`chargen/sampling_config.py`); `chargen train` starts from its preset's values.",
    ]
    for name, command in sub.choices.items():
        lines += ["", f"## chargen {name}", "", _cell(helps.get(name)), ""]
        lines += ["| flag | default | help |", "|---|---|---|"]
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flags = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest}`"
            default = _default(action, name)
            lines.append(f"| {flags} | {default} | {_cell(action.help)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
