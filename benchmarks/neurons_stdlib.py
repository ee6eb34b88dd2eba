"""The neuron lab on Python source: train on a 10 MB slice of ``python-stdlib`` for 10 minutes,
then find the units for bracket depth, strings and indentation on held-out source.

The run trains with the default preset (``auto``) on the first ``--chars`` characters of the
corpus; the held-out text is the ``--probe`` characters after them (never trained on).
``chargen neurons`` ranks the units; the script prints the best unit of each feature with its
Pearson r, and writes the lab page (``--html``) and, with ``--screenshot``, a PNG of it in
headless Chromium. Resumes: an existing ``--out`` run is reused, not retrained.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/neurons_stdlib.py --out /tmp/stdlib-run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from chargen.corpus import load_corpus  # noqa: E402

FEATURES = (
    "round_depth",
    "square_depth",
    "curly_depth",
    "in_double_quotes",
    "in_single_quotes",
    "indentation",
    "line_position",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the run folder (reused if it exists)")
    parser.add_argument("--chars", type=int, default=10_000_000, help="training characters")
    parser.add_argument("--probe", type=int, default=100_000, help="held-out characters read")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--html", help="write the lab page here")
    parser.add_argument("--screenshot", help="a 1400 px PNG of the page (needs --html)")
    args = parser.parse_args()
    print(describe(), flush=True)
    text = load_corpus("python-stdlib", progress=False).text
    if len(text) < args.chars + args.probe:
        raise SystemExit(f"python-stdlib has {len(text):,} characters, fewer than asked")
    work = Path(tempfile.mkdtemp(prefix="chargen-neurons-stdlib-"))
    train_file, probe_file = work / "train.py.txt", work / "probe.py.txt"
    train_file.write_text(text[: args.chars], encoding="utf-8")
    probe_file.write_text(text[args.chars : args.chars + args.probe], encoding="utf-8")
    run = Path(args.out)
    chargen = [sys.executable, "-m", "chargen"]
    if not (run / "config.json").exists():
        command = [*chargen, "train", str(train_file), "--out", str(run)]
        command += ["--minutes", str(args.minutes), "--threads", str(args.threads)]
        print("train:", " ".join(command), flush=True)
        started = time.time()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        print(f"trained in {time.time() - started:.0f} s", flush=True)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = min((r for r in records if r["kind"] == "eval"), key=lambda r: r["val_nats_per_char"])
    config = json.loads((run / "config.json").read_text())
    model = config["model"]
    print(
        f"model: {model['family']} {model['num_layers']} x {model['hidden_size']}; best validation "
        f"{best['val_nats_per_char']:.4f} nats/char at step {best['step']} of "
        f"{max(r['step'] for r in records)}",
        flush=True,
    )
    command = [*chargen, "neurons", str(run), str(probe_file), "--json", "--top", "3"]
    if args.html:
        command += ["--html", args.html]
    started = time.time()
    found = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    print(f"neurons over {args.probe:,} held-out characters: {time.time() - started:.0f} s")
    print(f"{'feature':<18} best unit (layer:kind:unit)   r")
    for feature in FEATURES:
        items = [item for item in found if item["feature"] == feature]
        if items:
            top = items[0]
            name = f"{top['layer']}:{top['kind']}:{top['unit']}"
            print(f"{feature:<18} {name:<28} {top['r']:+.3f}")
    if args.html and args.screenshot:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(Path(args.html).resolve().as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=120_000)
            page.screenshot(path=args.screenshot)
            browser.close()
        print(f"screenshot: {args.screenshot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
