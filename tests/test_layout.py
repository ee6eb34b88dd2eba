"""Which tests exercise which module: the map from each source module to its test files.

``TESTS_OF`` names, for every module under ``src/chargen`` (its path relative to that
folder), the files in ``tests/`` that exercise it, the most direct first. Many test files are
named for a behaviour rather than a module (``atomic.py`` is tested by
``test_hostile_files.py`` and ``test_nothing_lost.py``), so this map is how a change finds its
tests. When you change a module, run its files::

    python -m pytest $(python -c "from tests.test_layout import files_for; \\
        print(*files_for('server/batcher.py'))")

When you add a module, add its entry here (with the tests that reach it) or this file fails.

Each listed file must reach its module in a way checked mechanically below (``reaches``):

* it imports the module (``from chargen.X import ...``, ``import chargen.X``,
  ``from chargen import X``), or imports a name that a package's ``__init__.py`` takes from
  it (``from chargen.training import start_run`` reaches ``training/run.py``;
  ``chargen.train`` reaches ``api.py`` through ``chargen.__init__``'s lazy table);
* for a ``cli_*.py`` module: it runs the command line (imports ``chargen.cli``, runs
  ``python -m chargen`` or conftest's ``run_chargen``) with one of the module's commands as an
  argument (the commands come from ``add_parser("NAME")`` + ``set_defaults(func=cmd_X)`` and
  the module that defines ``cmd_X``);
* for a server module: it holds one of the module's route paths (``@app.post("/v1/beams")``);
* for ``__main__.py``: it runs ``python -m chargen``;
* through another module: ``THROUGH`` lists, for a module that tests reach by way of others
  (a helper no test names, or a layer under the public API), the modules that import it and
  that the tests exercise it by; a file reaches the module when it reaches one of those.

A module no test reaches at all goes in ``UNTESTED`` with the reason, not in ``TESTS_OF``.
This file reads sources only: it imports no part of chargen.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "chargen"
TESTS = ROOT / "tests"

TESTS_OF: dict[str, tuple[str, ...]] = {
    "__main__.py": ("test_cli.py", "test_interrupt.py", "test_hostile_server.py", "test_scale.py"),
    "api.py": ("test_api.py", "test_train.py", "test_nothing_lost.py", "test_tensorboard.py"),
    "atomic.py": ("test_hostile_files.py", "test_nothing_lost.py", "test_checkpoint.py"),
    "auto.py": ("test_auto.py",),
    "beam.py": ("test_beam.py", "test_beam_inspect_score.py"),
    "chain.py": ("test_chain.py", "test_constraints.py", "test_samplers.py", "test_numpy_rules.py"),
    "checkpoint.py": (
        "test_checkpoint.py",
        "test_nothing_lost.py",
        "test_hostile_files.py",
        "test_interrupt.py",
    ),
    "clamp.py": ("test_clamp.py",),
    "cli.py": ("test_cli.py", "test_fuzz_cli.py", "test_bad_input.py", "test_hostile_files.py"),
    "cli_data.py": (
        "test_hostile_files.py",
        "test_prepare_lines.py",
        "test_cli.py",
        "test_scale.py",
    ),
    "cli_eval.py": (
        "test_cli.py",
        "test_beam_inspect_score.py",
        "test_escapes_and_seeds.py",
        "test_export_onnx.py",
    ),
    "cli_export.py": ("test_export_onnx.py", "test_export_web.py"),
    "cli_generate.py": (
        "test_cli.py",
        "test_bad_input.py",
        "test_constraints.py",
        "test_escapes_and_seeds.py",
    ),
    "cli_inspect.py": (
        "test_beam_inspect_score.py",
        "test_run_novelty.py",
        "test_neurons.py",
        "test_cli.py",
    ),
    "cli_options.py": ("test_flags_doc.py", "test_cli.py", "test_bad_input.py", "test_fuzz_cli.py"),
    "cli_parser.py": ("test_flags_doc.py", "test_cli.py", "test_fuzz_cli.py", "test_bad_input.py"),
    "cli_serve.py": ("test_openai_api.py", "test_hostile_server.py", "test_cli.py"),
    "cli_train.py": ("test_train.py", "test_cli.py", "test_bad_input.py", "test_interrupt.py"),
    "config.py": ("test_config.py", "test_budget.py", "test_auto.py", "test_flags_doc.py"),
    "config_checks.py": ("test_config.py", "test_hostile_files.py"),
    "constraint_automaton.py": ("test_constraints.py", "test_numpy_rules.py"),
    "constraint_index.py": ("test_constraints.py", "test_numpy_rules.py"),
    "constraint_rules.py": ("test_constraints.py", "test_numpy_rules.py"),
    "constraints.py": ("test_constraints.py", "test_numpy_rules.py"),
    "corpus.py": ("test_corpus.py", "test_text_reader.py", "test_prepare_lines.py"),
    "corpus_download.py": ("test_corpus.py",),
    "corpus_named.py": ("test_corpus.py",),
    "data.py": ("test_data.py", "test_prepare.py"),
    "distributed.py": ("test_scale.py", "test_train.py"),
    "dry.py": ("test_samplers.py", "test_numpy_rules.py"),
    "early_stop.py": ("test_early_stop.py",),
    "errors.py": ("test_config.py", "test_corpus.py", "test_tokenizer.py", "test_hostile_files.py"),
    "escapes.py": ("test_escapes_and_seeds.py", "test_lines_cli.py"),
    "evaluate.py": ("test_evaluate.py", "test_lines.py", "test_bpe.py", "test_train.py"),
    "export_onnx.py": ("test_export_onnx.py",),
    "export_web.py": ("test_export_web.py",),
    "fields.py": ("test_flags_doc.py",),
    "flags_doc.py": ("test_flags_doc.py",),
    "generate.py": (
        "test_generate.py",
        "test_constraints.py",
        "test_samplers.py",
        "test_token_loop.py",
    ),
    "inspect_next.py": (
        "test_beam_inspect_score.py",
        "test_clamp.py",
        "test_server.py",
        "test_token_loop.py",
    ),
    "items.py": ("test_generate.py",),
    "lines.py": (
        "test_lines.py",
        "test_prepare_lines.py",
        "test_lines_cli.py",
        "test_run_novelty.py",
    ),
    "lite.py": ("test_lite.py", "test_instant_cli.py"),
    "models/base.py": ("test_families.py", "test_beam.py"),
    "models/rnn.py": ("test_families.py", "test_neurons.py", "test_generate.py"),
    "models/stepper.py": (
        "test_token_loop.py",
        "test_numpy_generation.py",
        "test_generate.py",
        "test_families.py",
    ),
    "models/transformer.py": ("test_families.py",),
    "neurons.py": ("test_neurons.py", "test_neurons_bar.py"),
    "neurons_page.py": ("test_neurons.py", "test_neurons_route.py"),
    "novelty.py": ("test_novelty.py", "test_run_novelty.py"),
    "numpy_draw.py": ("test_numpy_rules.py",),
    "numpy_generation.py": ("test_numpy_generation.py",),
    "numpy_rules.py": ("test_numpy_rules.py",),
    "numpy_step.py": ("test_numpy_generation.py", "test_token_loop.py"),
    "onnx_check.py": ("test_export_onnx.py",),
    "onnx_engine.py": ("test_export_onnx.py",),
    "onnx_graph.py": ("test_export_onnx.py",),
    "onnx_int8.py": ("test_export_onnx.py",),
    "onnx_ports.py": ("test_export_onnx.py",),
    "optimizers.py": ("test_optimizers.py",),
    "plots.py": ("test_cli.py",),
    "prepare.py": (
        "test_prepare.py",
        "test_prepare_lines.py",
        "test_hostile_files.py",
        "test_text_reader.py",
    ),
    "prepare_folder.py": (
        "test_prepare.py",
        "test_hostile_files.py",
        "test_prepare_lines.py",
        "test_scale.py",
    ),
    "prepare_novelty.py": ("test_run_novelty.py",),
    "prepare_reader.py": ("test_prepare.py", "test_prepare_lines.py", "test_text_reader.py"),
    "prepare_writer.py": ("test_prepare.py", "test_hostile_files.py"),
    "presets.py": ("test_config.py", "test_auto.py", "test_families.py"),
    "prompt_ids.py": ("test_generate.py", "test_lite.py", "test_instant_cli.py"),
    "prompt_logprobs.py": ("test_openai_api.py",),
    "reporting.py": ("test_train.py",),
    "rng.py": ("test_rng.py", "test_samplers.py", "test_token_loop.py", "test_sampling.py"),
    "run_files.py": (
        "test_lite.py",
        "test_checkpoint.py",
        "test_hostile_files.py",
        "test_nothing_lost.py",
    ),
    "run_novelty.py": ("test_run_novelty.py",),
    "run_text.py": ("test_run_novelty.py", "test_neurons.py"),
    "samplers.py": ("test_samplers.py", "test_numpy_rules.py"),
    "sampling.py": ("test_sampling.py", "test_samplers.py", "test_numpy_rules.py", "test_beam.py"),
    "sampling_config.py": ("test_sampling.py", "test_flags_doc.py", "test_samplers.py"),
    "sampling_draw.py": ("test_sampling.py", "test_samplers.py", "test_numpy_rules.py"),
    "score.py": ("test_beam_inspect_score.py",),
    "seed_text.py": ("test_playground_e2e.py", "test_export_web.py"),
    "server/app.py": (
        "test_server.py",
        "test_hostile_server.py",
        "test_openai_api.py",
        "test_playground_e2e.py",
    ),
    "server/batcher.py": ("test_hostile_server.py", "test_samplers.py"),
    "server/beams_route.py": ("test_beams_route.py",),
    "server/body.py": ("test_hostile_server.py", "test_openai_api.py", "test_neurons_route.py"),
    "server/guard.py": ("test_server_guard.py",),
    "server/live.py": ("test_live_weights.py",),
    "server/neurons_route.py": ("test_neurons_route.py",),
    "server/openai_api.py": ("test_openai_api.py",),
    "server/openai_choices.py": ("test_openai_api.py",),
    "server/openai_errors.py": ("test_openai_api.py",),
    "server/openai_replies.py": ("test_openai_api.py",),
    "server/openai_request.py": ("test_openai_api.py",),
    "server/page_routes.py": ("test_server.py", "test_playground_e2e.py"),
    "server/requests.py": (
        "test_server.py",
        "test_hostile_server.py",
        "test_openai_api.py",
        "test_beams_route.py",
    ),
    "server/threads.py": ("test_openai_api.py", "test_hostile_server.py", "test_cli.py"),
    "server/watch.py": ("test_hostile_server.py", "test_openai_api.py"),
    "text_features.py": ("test_neurons.py", "test_neurons_bar.py"),
    "text_reader.py": ("test_text_reader.py",),
    "token_loop.py": ("test_token_loop.py",),
    "token_record.py": ("test_token_record.py",),
    "tokenizer.py": ("test_tokenizer.py", "test_bpe.py", "test_data.py", "test_prepare.py"),
    "tokenizer_base.py": ("test_tokenizer.py", "test_bpe.py"),
    "tokenizer_bpe.py": ("test_bpe.py",),
    "tokenizer_plain.py": ("test_tokenizer.py", "test_bpe.py"),
    "training/callbacks.py": ("test_callbacks.py",),
    "training/loop.py": (
        "test_budget.py",
        "test_train.py",
        "test_interrupt.py",
        "test_callbacks.py",
    ),
    "training/run.py": ("test_train.py", "test_budget.py", "test_nothing_lost.py", "test_scale.py"),
    "training/runtime.py": ("test_train.py", "test_interrupt.py", "test_scale.py"),
    "training/samples.py": ("test_lines_cli.py", "test_cli.py", "test_train.py"),
    "training/schedule.py": ("test_budget.py", "test_train.py"),
    "training/step.py": ("test_nothing_lost.py", "test_train.py", "test_budget.py"),
    "training/tensorboard.py": ("test_tensorboard.py",),
    "training/trainer.py": (
        "test_budget.py",
        "test_train.py",
        "test_callbacks.py",
        "test_nothing_lost.py",
    ),
    "units.py": ("test_neurons.py", "test_clamp.py", "test_neurons_bar.py"),
    "version.py": ("test_config.py", "test_cli.py"),
}

# module -> modules (or a package's ``__init__.py``) that import it and by which tests reach it
THROUGH: dict[str, tuple[str, ...]] = {
    "cli_options.py": ("cli_parser.py",),
    "cli_parser.py": ("cli.py",),
    "config_checks.py": ("config.py",),
    "constraint_automaton.py": ("constraints.py",),
    "constraint_index.py": ("constraints.py",),
    "constraint_rules.py": ("constraints.py",),
    "corpus_download.py": ("corpus.py",),
    "corpus_named.py": ("corpus.py",),
    "distributed.py": ("training/run.py", "training/trainer.py"),
    "dry.py": ("samplers.py",),
    "models/base.py": ("models/__init__.py",),
    "models/rnn.py": ("models/__init__.py",),
    "models/transformer.py": ("models/__init__.py",),
    "neurons_page.py": ("server/neurons_route.py", "cli_inspect.py"),
    "onnx_check.py": ("export_onnx.py",),
    "onnx_engine.py": ("cli_generate.py", "cli_eval.py", "cli_export.py"),
    "onnx_graph.py": ("export_onnx.py",),
    "onnx_int8.py": ("export_onnx.py",),
    "onnx_ports.py": ("export_onnx.py",),
    "lite.py": ("cli_generate.py",),
    "plots.py": ("cli_train.py",),
    "prepare_folder.py": ("prepare.py",),
    "prepare_novelty.py": ("prepare.py",),
    "prepare_reader.py": ("prepare.py",),
    "prepare_writer.py": ("prepare.py",),
    "presets.py": ("config.py",),
    "prompt_ids.py": ("generate.py", "lite.py", "cli_generate.py"),
    "prompt_logprobs.py": ("server/openai_choices.py",),
    "run_files.py": ("checkpoint.py", "lite.py"),
    "run_text.py": ("cli_options.py", "cli_inspect.py"),
    "sampling_config.py": ("sampling.py",),
    "sampling_draw.py": ("sampling.py",),
    "seed_text.py": ("export_web.py", "server/app.py"),
    "server/body.py": ("server/app.py",),
    "server/live.py": ("server/app.py",),
    "server/openai_choices.py": ("server/openai_api.py",),
    "server/openai_errors.py": ("server/openai_api.py",),
    "server/openai_replies.py": ("server/openai_api.py",),
    "server/openai_request.py": ("server/openai_api.py",),
    "server/requests.py": ("server/app.py",),
    "server/threads.py": ("cli_serve.py",),
    "server/watch.py": ("server/app.py",),
    "tokenizer_base.py": ("tokenizer.py",),
    "tokenizer_bpe.py": ("tokenizer.py",),
    "training/loop.py": ("training/trainer.py",),
    "training/run.py": ("api.py", "cli_train.py"),
    "training/runtime.py": ("training/run.py",),
    "training/samples.py": ("training/trainer.py",),
    "training/schedule.py": ("training/trainer.py",),
    "training/step.py": ("training/trainer.py",),
    "training/tensorboard.py": ("training/trainer.py",),
    "training/trainer.py": ("training/run.py",),
    "units.py": ("clamp.py", "neurons.py"),
    "version.py": ("cli_parser.py",),
}

# module -> why no test reaches it
UNTESTED: dict[str, str] = {}


def files_for(module: str) -> list[str]:
    """``tests/...`` paths of the files that exercise ``module`` (for pytest's command line)."""
    return [f"tests/{name}" for name in TESTS_OF[module]]


# ----------------------------------------------------------------------------- what is on disk
def modules_on_disk() -> set[str]:
    return {p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if p.name != "__init__.py"}


def dotted(module: str) -> str:
    """``server/app.py`` -> ``chargen.server.app``; ``models/__init__.py`` -> ``chargen.models``."""
    parts = ["chargen", *module.removesuffix(".py").split("/")]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _strings(tree: ast.AST) -> set[str]:
    return {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def imported_names(tree: ast.AST) -> set[str]:
    """Every dotted name an import statement of ``tree`` binds or reads: ``from a.b import c``
    gives ``a.b`` and ``a.b.c``; ``import a.b`` gives ``a.b``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@functools.cache
def reexports() -> dict[str, str]:
    """``chargen.pkg.NAME`` -> the module that defines it, for each name a package's
    ``__init__.py`` imports from one of its modules (and ``chargen``'s lazy ``_LAZY`` table)."""
    found: dict[str, str] = {}
    by_dotted = {dotted(m): m for m in modules_on_disk()}
    for init in SRC.rglob("__init__.py"):
        package = dotted(init.relative_to(SRC).as_posix())
        tree = _tree(init)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in by_dotted:
                for alias in node.names:
                    found[f"{package}.{alias.asname or alias.name}"] = by_dotted[node.module]
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets)
                and isinstance(node.value, ast.Dict)
            ):
                for key, value in zip(node.value.keys, node.value.values, strict=True):
                    assert isinstance(key, ast.Constant) and isinstance(value, ast.Constant)
                    if value.value in by_dotted:
                        found[f"{package}.{key.value}"] = by_dotted[value.value]
    return found


def _attribute_names(tree: ast.AST) -> set[str]:
    """``chargen.train`` for each ``chargen.train`` read in ``tree`` (after ``import chargen``)."""
    return {
        f"chargen.{n.attr}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and isinstance(n.value, ast.Name)
        and n.value.id == "chargen"
    }


@functools.cache
def commands() -> dict[str, frozenset[str]]:
    """``cli_eval.py`` -> {"eval", "score"}: the subcommands whose ``cmd_*`` each module defines."""
    func_of: dict[str, str] = {}
    pattern = re.compile(r'add_parser\(\s*"([\w-]+)".*?set_defaults\(func=(\w+)\)', re.S)
    for path in SRC.glob("cli*.py"):
        for name, func in pattern.findall(path.read_text(encoding="utf-8")):
            func_of[func] = name
    found: dict[str, frozenset[str]] = {}
    for path in SRC.glob("cli_*.py"):
        defined = re.findall(r"^def (cmd_\w+)", path.read_text(encoding="utf-8"), re.M)
        names = frozenset(func_of[f] for f in defined if f in func_of)
        if names:
            found[path.name] = names
    return found


@functools.cache
def routes() -> dict[str, frozenset[str]]:
    """``server/beams_route.py`` -> {"/v1/beams"}: the paths each server module registers."""
    pattern = re.compile(r'(?:@app\.(?:get|post|put|patch|delete)|add_api_route)\(\s*"([^"]+)"')
    found: dict[str, frozenset[str]] = {}
    for path in (SRC / "server").glob("*.py"):
        # "/" alone would match any path in any file: a page route counts by its other paths
        paths = frozenset(p for p in pattern.findall(path.read_text(encoding="utf-8")) if p != "/")
        if paths:
            found[f"server/{path.name}"] = paths
    return found


def _runs_cli(tree: ast.AST) -> bool:
    """``tree`` imports ``chargen.cli`` or conftest's ``run_chargen``, or runs ``-m chargen``."""
    names = imported_names(tree)
    if "chargen.cli" in names or any(n.endswith("conftest.run_chargen") for n in names):
        return True
    return _runs_module(tree)


SERVE_HELPER = "tests.serving.serve_process"  # runs ``python -m chargen serve RUN``


def _runs_module(tree: ast.AST) -> bool:
    """``tree`` holds a list ``[..., "-m", "chargen", ...]`` (``python -m chargen``), or uses
    ``SERVE_HELPER``, which runs it."""
    if SERVE_HELPER in imported_names(tree):
        return True
    for node in ast.walk(tree):
        if isinstance(node, ast.List | ast.Tuple):
            values = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            if any(a == "-m" and b == "chargen" for a, b in zip(values, values[1:], strict=False)):
                return True
    return False


def _command_arguments(tree: ast.AST) -> set[str]:
    """String literals placed where a subcommand goes: the first item of a list or tuple, the
    item after ``"chargen"`` in one, or a positional argument of a call."""
    found: set[str] = set()
    for node in ast.walk(tree):
        items: list[ast.expr] = []
        if isinstance(node, ast.List | ast.Tuple) and node.elts:
            items = [node.elts[0]]
            items += [
                b
                for a, b in zip(node.elts, node.elts[1:], strict=False)
                if isinstance(a, ast.Constant) and a.value == "chargen"
            ]
        elif isinstance(node, ast.Call):
            items = list(node.args)
        found.update(
            e.value for e in items if isinstance(e, ast.Constant) and isinstance(e.value, str)
        )
    return found


def _holds_route(strings: set[str], route: str) -> bool:
    if "{" in route:
        prefix = route.split("{")[0]
        return any(s.startswith(prefix) for s in strings)
    return any(s == route or s.startswith((route + "/", route + "?")) for s in strings)


def direct_ways(test_file: str, module: str) -> list[str]:
    """How ``tests/test_file`` reaches ``module`` by itself (empty: it does not)."""
    tree = _tree(TESTS / test_file)
    ways = []
    names = imported_names(tree)
    if dotted(module) in names:
        ways.append("imports it")
    used = names | (_attribute_names(tree) if "chargen" in names else set())
    if any(reexports().get(n) == module for n in used):
        ways.append("imports a name its package re-exports")
    if module in commands() and _runs_cli(tree):
        served = {"serve"} if SERVE_HELPER in names else set()
        hit = commands()[module] & (_command_arguments(tree) | served)
        if hit:
            ways.append(f"runs chargen {'/'.join(sorted(hit))}")
    if module in routes():
        hit = {r for r in routes()[module] if _holds_route(_strings(tree), r)}
        if hit:
            ways.append(f"calls {', '.join(sorted(hit))}")
    if module == "__main__.py" and _runs_module(tree):
        ways.append("runs python -m chargen")
    return ways


def source_imports(importer: str, module: str) -> bool:
    """Whether ``importer``'s source (a module or a package ``__init__.py``) imports ``module``
    (or a name that a package re-exports from it)."""
    names = imported_names(_tree(SRC / importer))
    return dotted(module) in names or any(reexports().get(n) == module for n in names)


def reaches(test_file: str, module: str, seen: frozenset[str] = frozenset()) -> bool:
    """Whether ``tests/test_file`` reaches ``module``: by itself, or through ``THROUGH``."""
    if direct_ways(test_file, module):
        return True
    return any(
        via not in seen and reaches(test_file, via, seen | {module})
        for via in THROUGH.get(module, ())
    )


# ----------------------------------------------------------------------------- the tests
def test_every_module_is_mapped() -> None:
    on_disk = modules_on_disk()
    mapped = set(TESTS_OF) | set(UNTESTED)
    missing = sorted(on_disk - mapped)
    assert not missing, (
        f"new modules without an entry in tests/test_layout.py: {missing}; add each to TESTS_OF "
        "with the test files that exercise it (or write those tests)"
    )
    gone = sorted(mapped - on_disk)
    assert not gone, f"tests/test_layout.py maps modules that no longer exist: {gone}"
    assert set(TESTS_OF) == on_disk - set(UNTESTED)


def test_untested_and_mapped_are_disjoint() -> None:
    assert not set(UNTESTED) & set(TESTS_OF)
    assert set(UNTESTED) | set(TESTS_OF) == modules_on_disk()
    assert all(reason.strip() for reason in UNTESTED.values())


def test_through_names_modules_that_import_it() -> None:
    for module, vias in THROUGH.items():
        assert module in TESTS_OF, f"THROUGH maps {module}, which TESTS_OF does not"
        for via in vias:
            assert (SRC / via).exists(), f"{module} is reached through {via}, which is gone"
            assert source_imports(via, module), f"{via} no longer imports {module}: fix THROUGH"


@pytest.mark.parametrize("module", sorted(TESTS_OF))
def test_each_mapped_file_exists_and_reaches_its_module(module: str) -> None:
    files = TESTS_OF[module]
    assert files, f"{module}: list its tests, or move it to UNTESTED with the reason"
    assert len(set(files)) == len(files), f"{module}: a file is listed twice"
    for name in files:
        assert (TESTS / name).is_file(), f"{module}: tests/{name} does not exist"
        assert reaches(name, module), (
            f"tests/{name} neither imports {module}, nor runs its commands, nor calls its routes"
            + (
                f", nor reaches it through {', '.join(THROUGH[module])}"
                if module in THROUGH
                else ""
            )
        )
