"""Quality per minute over corpus sizes and time budgets: the measurements behind ``--preset auto``.

A cell is (corpus size, budget in minutes, candidate, seed): one fresh ``chargen train SLICE
--minutes M --seed S`` process, then ``chargen eval RUN --json --weights best`` for the validation
loss of its best weights in nats per character. A size is a slice of one corpus cut at a line
boundary, written to a temporary folder: the first corpus of ``--mixture`` that holds that many
characters, or the one named as ``SIZE@CORPUS`` (``all@CORPUS``: the whole corpus). Each finished
cell is one JSON line in ``--results``; a rerun skips those (failed cells run again), so the sweep
can run in parts, and Ctrl-C mid-cell records nothing for that cell. ``--table`` prints rows of
size x budget, a column per candidate, the best in bold and ``auto``'s gap to the best other
candidate (the bar: <= 2%).

    python benchmarks/sweep.py --sizes 10k 100k 1m 10m --budgets 0.5 1 3
    python benchmarks/sweep.py --cells 1m:10 --plan
    python benchmarks/sweep.py --cells 10k:0.5,100k:0.5 --candidate 'lstm96:--preset quick --hidden-size 96'
    python benchmarks/sweep.py --table
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, eval_records, train_command  # noqa: E402

from chargen.auto import CANDIDATES as AUTO_CANDIDATES  # noqa: E402
from chargen.auto import candidate_preset  # noqa: E402
from chargen.cli_options import _flag as flag_name  # noqa: E402
from chargen.config import PRESETS  # noqa: E402
from chargen.corpus import NAMED_CORPORA, load_corpus  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "sweep_sizes.jsonl"
MIXTURE = ("tinyshakespeare", "nietzsche", "python-stdlib")  # each size: the first that holds it
KEY = ("size", "corpus", "minutes", "candidate", "seed")  # one cell, one line in --results
# what each record keeps of the run's training settings (those the rule may choose)
TRAIN_KEYS = ("batch_size", "seq_len", "lr", "weight_decay", "warmup_steps", "eval_every",
              "eval_max_tokens", "patience", "patience_share")  # fmt: skip
STARTUP_S = 15  # per cell beyond its budget: process start, data, final evaluation (estimate)


def candidate_flags(name: str) -> list[str]:
    """``chargen train`` flags for one of ``chargen.auto``'s candidates (slice, budget, seed and
    run folder are added)."""
    base, changes = AUTO_CANDIDATES[name]
    return ["--preset", base] + [x for k, v in changes.items() for x in (flag_name(k), str(v))]


def auto_cadence_flags(name: str) -> list[str]:
    """``--preset auto`` with every model and optimiser field of candidate ``name`` given: the
    candidate as auto trains it (its evaluation cadence and patience), whatever auto would pick."""
    preset = candidate_preset(name)
    given = [(k, getattr(preset.model, k)) for k in MODEL_FIELDS]
    given += [(k, getattr(preset.train, k)) for k in TRAIN_FIELDS]
    flags = ["--preset", "auto"]
    for field, value in given:
        if isinstance(value, bool):
            flags.append(("--" if value else "--no-") + flag_name(field)[2:])
        else:
            flags += [flag_name(field), str(value)]
    return flags


MODEL_FIELDS = ("family", "embed_dim", "hidden_size", "num_layers", "dropout", "tie_weights",
                "layer_norm", "num_heads", "context_size", "positions")  # fmt: skip
TRAIN_FIELDS = ("batch_size", "seq_len", "lr", "weight_decay", "warmup_steps")

# what each candidate trains: auto's own candidates, each named preset, each candidate as auto
# would train it (``auto:NAME``), and auto itself
CANDIDATES: dict[str, list[str]] = {
    **{name: ["--preset", name] for name in PRESETS if name != "auto"},
    **{name: candidate_flags(name) for name in AUTO_CANDIDATES},
    **{f"auto:{name}": auto_cadence_flags(name) for name in AUTO_CANDIDATES},
    "auto": ["--preset", "auto"],  # the rule under test
}
DEFAULT_CANDIDATES = [
    "quick", "minute", "small", "medium", "long", "transformer", "gru", "lstm128-d2",
    "lstm256-d3", "auto",
]  # fmt: skip


def parse_size(text: str) -> tuple[str, int | None, str | None]:
    """``10k``, ``2.5m``, ``100000`` or ``all``, optionally ``@CORPUS``: (label, chars, corpus)."""
    match = re.fullmatch(r"(?:(all)|(\d+(?:\.\d+)?)([km]?))(?:@(.+))?", text.strip().lower())
    if not match or (match[4] and match[4] not in NAMED_CORPORA) or (match[1] and not match[4]):
        raise argparse.ArgumentTypeError(
            f"{text!r}: want 10k, 1m, ... or all@CORPUS (corpora: {', '.join(NAMED_CORPORA)})"
        )
    if match[1]:
        return "all", None, match[4]
    chars = int(float(match[2]) * {"": 1, "k": 10**3, "m": 10**6}[match[3]])
    label = f"{chars // 10**6}m" if chars % 10**6 == 0 else f"{chars / 1000:g}k"
    return label, chars, match[4]


def parse_cells(text: str) -> list[tuple[tuple[str, int | None, str | None], float]]:
    """``10k:0.5,1m:3`` as (size, budget) pairs."""
    cells = []
    for item in filter(None, text.split(",")):
        size, _, budget = item.rpartition(":")
        try:
            cells.append((parse_size(size), float(budget)))
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(f"{item!r}: want SIZE:MINUTES, e.g. 10k:0.5") from None
    return cells


def parse_candidate(text: str) -> tuple[str, list[str]]:
    """``NAME:--flag value --flag value`` as (name, flags)."""
    name, sep, flags = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: want NAME:--flag value ...")
    return name.strip(), shlex.split(flags)


def load_text(name: str, data_dir: str) -> str | None:
    """A named corpus's text; None for a downloadable one that ``data_dir`` lacks (no network)."""
    corpus = NAMED_CORPORA[name]
    if not corpus.offline and not (Path(data_dir) / str(corpus.filename)).is_file():
        return None
    return load_corpus(name, data_dir=data_dir, progress=False).text


def make_slices(sizes: list, mixture: list[str], data_dir: str, folder: str) -> dict:
    """Write each size's slice into ``folder``: (label, corpus asked) -> {path, corpus, chars}."""
    texts: dict[str, str | None] = {}
    slices = {}
    for label, chars, named in sizes:
        for name in [named] if named else mixture:
            if name not in texts:
                texts[name] = load_text(name, data_dir)
            text = texts[name]
            if text is not None and (chars is None or len(text) >= chars):
                break
        else:
            tried = named or " ".join(mixture)
            print(f"size {label}: no corpus of {tried} holds it (data: {data_dir}); skipped")
            continue
        assert text is not None
        piece = text if chars is None else text[: text.rfind("\n", 0, chars) + 1] or text[:chars]
        path = Path(folder, f"{name}-{label}.txt")
        path.write_text(piece, encoding="utf-8")
        slices[label, named] = {"path": path, "corpus": name, "chars": len(piece)}
        part = "all" if len(piece) == len(text) else f"the first {len(piece):,} of"
        print(f"size {label}: {part} {len(text):,} chars of {name}")
    return slices


def last_line(text: str) -> str:
    """The last non-empty line of a process's stderr (chargen's one-line error)."""
    return (text.strip().splitlines() or ["(no message)"])[-1]


def run_cell(path: Path, minutes: float, flags: list[str], seed: int, data_dir: str) -> dict:
    """Train and evaluate one cell in a temporary run folder; its measurements or ``error``."""
    with tempfile.TemporaryDirectory(prefix="chargen-sweep-run-") as out:
        budget = ["--minutes", f"{minutes:g}", "--seed", str(seed)]
        cmd = train_command(str(path), out, data_dir, *flags, *budget)
        shown = shlex.join(["python", *cmd[1:]]).replace(str(path), "SLICE").replace(out, "RUN")
        limit = minutes * 180 + 300
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            return {"cmd": shown, "error": f"no end after {limit:.0f} s"}
        wall = time.perf_counter() - start
        if proc.returncode in (130, 143, -2, -15):  # chargen train stopped by SIGINT / SIGTERM
            raise KeyboardInterrupt
        if proc.returncode != 0:
            return {"cmd": shown, "error": last_line(proc.stderr)}
        scored = subprocess.run(
            [sys.executable, "-m", "chargen", "eval", out, "--json", "--weights", "best"],
            capture_output=True,
            text=True,
        )
        if scored.returncode != 0:
            return {"cmd": shown, "error": "eval: " + last_line(scored.stderr)}
        nats = json.loads(scored.stdout.strip().splitlines()[-1])["nats_per_char"]
        evals = eval_records(out)
        config = json.loads(Path(out, "config.json").read_text())
        chose = config.get("auto") or {}  # --preset auto: the candidate and the probe's speed
        return {
            "cmd": shown,
            **(
                {"auto_chose": chose["candidate"], "probe_chars_per_s": chose["probe_chars_per_s"]}
                if chose
                else {}
            ),
            "val_nats_per_char": round(nats, 4),
            "best_at_s": round(min(evals, key=lambda r: r["val_nats_per_char"])["elapsed"], 1),
            "steps": evals[-1]["step"],
            "chars_per_s": round(evals[-1].get("chars_per_s") or 0),
            "wall_s": round(wall, 1),
            "model": config["model"],
            "train": {k: config["train"].get(k) for k in TRAIN_KEYS},
        }


def read_results(path: Path) -> list[dict]:
    """The records of a results file; a torn line (a killed write) is skipped with a warning."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if line.strip():
                print(f"warning: {path}:{number} is not JSON; ignored", file=sys.stderr)
    return records


def append_result(path: Path, record: dict) -> None:
    """Append one record as one line in a single write, after a newline if the file lacks one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record) + "\n"
    with open(path, "a+b") as handle:
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            line = line if handle.read(1) == b"\n" else "\n" + line
        handle.write(line.encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def cell_key(record: dict) -> tuple:
    """What makes a cell the same cell across runs: the values of ``KEY``."""
    return tuple(record[name] for name in KEY)


def table(records: list[dict]) -> str:
    """Markdown: a row per size x budget, a column per candidate (mean over seeds), auto's gap."""
    latest = {cell_key(r): r for r in records if "error" not in r}
    failed = {cell_key(r)[:4]: r for r in records if "error" in r}
    rows: dict[tuple, dict[str, list[float]]] = {}
    machines: dict[tuple, set[str]] = {}
    chosen: dict[tuple, str] = {}  # auto's candidate in each row
    for r in [*latest.values(), *failed.values()]:
        row = (r["chars"] if r["size"] != "all" else 1e18, r["size"], r["corpus"], r["minutes"])
        if "auto_chose" in r:
            chosen[row] = r["auto_chose"]
        values = rows.setdefault(row, {}).setdefault(r["candidate"], [])
        if "error" not in r:
            values.append(r["val_nats_per_char"])
            machines.setdefault(row, set()).add(r["machine"])
    order = list(CANDIDATES) + sorted({n for cells in rows.values() for n in cells})
    names = [n for n in dict.fromkeys(order) if any(n in cells for cells in rows.values())]
    names = [n for n in names if n != "auto"] + (["auto"] if "auto" in names else [])
    lines = [
        "| size | budget | " + " | ".join(names) + " | best | auto gap (its choice) |",
        "|---|---:|" + "---:|" * len(names) + "---|---:|",
    ]
    met = total = 0
    for row in sorted(rows):
        _, size, corpus, minutes = row
        means = {n: statistics.fmean(v) for n, v in rows[row].items() if v}
        # the bar: auto against the fixed presets and candidates (not its own auto:NAME runs)
        fixed = {n: v for n, v in means.items() if not n.startswith("auto")}
        best = min(means, key=means.__getitem__) if means else None
        cells = []
        for name in names:
            values = rows[row].get(name)
            text = "" if values is None else "failed" if not values else f"{means[name]:.4f}"
            text += f" ({len(values)})" if values and len(values) > 1 else ""
            cells.append(f"**{text}**" if name == best else text)
        gap = ""
        if "auto" in means and fixed:
            gap_pct = 100 * (means["auto"] / min(fixed.values()) - 1)
            met, total = met + (gap_pct <= 2), total + 1
            gap = f"{gap_pct:+.1f}% ({chosen.get(row, '?')})"
        mixed = " (mixed machines)" if len(machines.get(row, ())) > 1 else ""
        label = f"{size} {corpus}{mixed}"
        lines.append(f"| {label} | {minutes:g} min | {' | '.join(cells)} | {best or ''} | {gap} |")
    lines.append("\nvalidation nats/char of best.safetensors; (n): the mean of n seeds")
    if total:
        lines[-1] += f"; auto within 2% of the best fixed candidate in {met} of {total} rows"
    lines += [f"machine: {m}" for m in sorted(set().union(*machines.values()))]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    """The command line; ``flags``: candidate name -> chargen train flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    # fmt: off
    add("--sizes", nargs="+", type=parse_size, default=["10k", "100k", "1m", "10m"], metavar="SIZE",
        help="characters: 10k, 1m, ...; SIZE@CORPUS picks the corpus, all@CORPUS is all of it")
    add("--budgets", nargs="+", type=float, default=[0.5, 1.0, 3.0], metavar="MINUTES")
    add("--cells", type=parse_cells, help="run exactly these SIZE:MINUTES, e.g. 10k:0.5,1m:10")
    add("--candidates", nargs="+", choices=list(CANDIDATES), default=DEFAULT_CANDIDATES,
        metavar="NAME", help=f"default: {' '.join(DEFAULT_CANDIDATES)}; from: {' '.join(CANDIDATES)}")
    add("--candidate", type=parse_candidate, action="append", default=[], metavar="NAME:FLAGS",
        help="one more, e.g. 'lstm96:--preset quick --hidden-size 96' (repeatable)")
    add("--seeds", nargs="+", type=int, default=[0])
    add("--mixture", nargs="+", choices=list(NAMED_CORPORA), default=list(MIXTURE),
        metavar="CORPUS", help=f"a size comes from the first that holds it (default: {' '.join(MIXTURE)})")
    add("--data-dir", default=str(DEFAULT_DATA), help="the shared corpora (default: %(default)s)")
    add("--results", type=Path, default=DEFAULT_RESULTS, help="JSON lines, one per finished cell")
    add("--table", action="store_true", help="print the table of --results, train nothing")
    add("--plan", action="store_true", help="list the cells still to run, train nothing")
    # fmt: on
    args = parser.parse_args()
    args.sizes = [parse_size(s) if isinstance(s, str) else s for s in args.sizes]
    args.flags = {name: CANDIDATES[name] for name in args.candidates}
    for name, extra in args.candidate:
        if CANDIDATES.get(name, extra) != extra:
            parser.error(f"--candidate {name}: the name of a built-in candidate")
        args.flags[name] = extra
    return args


def pending(args: argparse.Namespace, slices: dict) -> tuple[list[tuple], int]:
    """The cells still to run as (key, slice, flags), and how many are already in --results."""
    done = {cell_key(r): r for r in read_results(args.results) if "error" not in r}
    cells = args.cells or [(size, minutes) for size in args.sizes for minutes in args.budgets]
    todo, skipped = [], 0
    for (label, _, named), minutes in cells:
        piece = slices.get((label, named))
        for seed in args.seeds if piece else []:
            for name, flags in args.flags.items():
                key = (label, piece["corpus"], minutes, name, seed)
                if key in done and done[key]["flags"] != flags:
                    raise SystemExit(f"{name} in {args.results} ran with other flags; rename it")
                skipped += key in done
                if key not in done:
                    todo.append((key, piece, flags))
    return todo, skipped


def main() -> int:
    args = parse_args()
    if args.table:
        print(table(read_results(args.results)))
        return 0
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # as Ctrl-C: the cell is dropped
    machine = "; ".join(line.split(": ", 1)[1] for line in describe().splitlines()[:2])
    print(f"machine: {machine}")
    sizes = dict.fromkeys(size for size, _ in args.cells) if args.cells else args.sizes
    with tempfile.TemporaryDirectory(prefix="chargen-sweep-slices-") as folder:
        slices = make_slices(list(sizes), args.mixture, args.data_dir, folder)
        todo, skipped = pending(args, slices)
        budget = sum(key[2] for key, _, _ in todo)
        print(
            f"{len(todo)} cells to run, {skipped} already in {args.results} (skipped); about "
            f"{budget + len(todo) * STARTUP_S / 60:.0f} min ({budget:g} min of budgets + "
            f"~{STARTUP_S} s a cell)"
        )
        for number, (key, piece, flags) in enumerate(todo, 1):
            head = f"[{number}/{len(todo)}] " + " ".join(map(str, key[:2])) + " "
            head += f"{key[2]:g} min {key[3]} seed {key[4]}"
            if args.plan:
                print(head)
                continue
            try:
                result = run_cell(piece["path"], key[2], flags, key[4], args.data_dir)
            except KeyboardInterrupt:
                print(f"\n{head}: interrupted, not recorded; rerun to resume")
                return 130
            record = dict(
                zip(KEY, key, strict=True), chars=piece["chars"], flags=flags, machine=machine
            )
            append_result(args.results, {**record, **result})
            if "error" in result:
                print(f"{head}: failed: {result['error']}", flush=True)
            else:
                done = f"{result['val_nats_per_char']:.4f} nats/char, {result['steps']} steps"
                print(f"{head}: {done}, {result['wall_s']} s", flush=True)
    if not args.plan:
        print("\n" + table(read_results(args.results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
