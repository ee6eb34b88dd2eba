"""Each field described once: the CLI's flags and help come from the configuration dataclasses'
field metadata, ``docs/flags.md`` is generated from the parser and must not be stale, and the
defaults a user meets agree between the command line and the Python API."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from pathlib import Path

import pytest

from chargen.cli import build_parser
from chargen.config import DataConfig, ModelConfig, TrainConfig
from chargen.fields import flag_name, help_of, is_flag
from chargen.flags_doc import render
from chargen.sampling_config import SamplingConfig

DOCS = Path(__file__).resolve().parents[1] / "docs" / "flags.md"
CONFIGS = (DataConfig, ModelConfig, TrainConfig, SamplingConfig)


def subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def test_docs_flags_md_is_the_parser_rendered() -> None:
    assert DOCS.read_text(encoding="utf-8") == render(), (
        "docs/flags.md is stale: python -m chargen.flags_doc > docs/flags.md"
    )


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_has_its_help_with_it(cls: type) -> None:
    for f in dataclasses.fields(cls):
        assert help_of(f), f"{cls.__name__}.{f.name} has no help"


@pytest.mark.parametrize(
    ("command", "classes"),
    [("train", (DataConfig, ModelConfig, TrainConfig)), ("generate", (SamplingConfig,))],
)
def test_the_parser_takes_flag_and_help_from_the_field(command: str, classes: tuple) -> None:
    actions = {a.dest: a for a in subparser(command)._actions}
    for cls in classes:
        for f in dataclasses.fields(cls):
            if not is_flag(f) or f.name == "temperature":  # generate takes several temperatures
                continue
            action = actions[f.name]
            assert flag_name(f) in action.option_strings
            assert (action.help or "").replace("%%", "%") == help_of(f)


def test_generation_defaults_agree_between_the_cli_and_the_api() -> None:
    from chargen.api import Run

    actions = {a.dest: a for a in subparser("generate")._actions}
    api = inspect.signature(Run.generate).parameters
    assert actions["length"].default == api["length"].default
    assert actions["num_samples"].default == 1
    assert actions["temperature"].default == [SamplingConfig().temperature]


def test_the_servers_request_takes_every_sampling_field_with_its_default_and_help() -> None:
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from chargen.server.app import GenerateRequest

    actions = {a.dest: a for a in subparser("generate")._actions}
    assert GenerateRequest.model_fields["length"].default == actions["length"].default
    for f in dataclasses.fields(SamplingConfig):
        served = GenerateRequest.model_fields[f.name]
        assert served.default == f.default and served.description == help_of(f), f.name
