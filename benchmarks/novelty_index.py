"""Novelty index: build time and size per MB of corpus, query time per 10K generated characters.

The corpus is tinyshakespeare and nietzsche (from ``--data-dir``, when present) followed by the
Python standard library's own sources, read in place and cut at each of ``--sizes`` million
characters (nothing is copied into the repository). For each size it times
``CorpusIndex.build`` (libdivsufsort via pydivsufsort), the index size, ``save`` and a
memory-mapped ``load``, and the matching statistics (what ``longest_copy``, ``copied_spans``
and ``report`` each run once) of two 10,000-character queries:

* ``markov``: sampled from an order-6 character Markov chain of the first million characters,
  so it copies short pieces the way a character model does;
* ``verbatim``: a 10,000-character slice of the corpus, all copied (the slow case).

Baseline, in the same run: the same matching statistics by Python's substring search
(``text[i:i+L+1] in corpus``, with the same ``lengths[i+1] >= lengths[i] - 1`` shortcut) on the
first ``--baseline-chars`` characters of each query, scaled to 10,000; both must agree.
Medians of ``--repeats`` runs.

    python benchmarks/novelty_index.py [--sizes 1 10] [--repeats 3] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import sysconfig
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from chargen.novelty import CorpusIndex  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MILLION = 1_000_000
QUERY_CHARS = 10_000
ORDER = 6


def corpus_pool(data_dir: Path, chars: int) -> str:
    """At least ``chars`` characters: the shared corpora, then standard-library sources."""
    parts, total = [], 0
    for name, encoding in (("tinyshakespeare.txt", "utf-8"), ("nietzsche.txt", "latin-1")):
        path = data_dir / name
        if path.is_file():
            parts.append(path.read_text(encoding=encoding))
            total += len(parts[-1])
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if total >= chars:
            break
        try:
            parts.append(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        total += len(parts[-1])
    if total < chars:
        raise SystemExit(f"only {total} characters of text found, {chars} wanted")
    return "".join(parts)[:chars]


def markov_text(source: str, length: int, seed: int = 0) -> str:
    """``length`` characters from an order-``ORDER`` character Markov chain of ``source``."""
    follow: dict[str, list[str]] = defaultdict(list)
    for i in range(len(source) - ORDER):
        follow[source[i : i + ORDER]].append(source[i + ORDER])
    rng = random.Random(seed)
    start = rng.randrange(len(source) - ORDER)
    out = list(source[start : start + ORDER])
    while len(out) < length:
        nexts = follow.get("".join(out[-ORDER:]))
        if not nexts:  # a dead end (the source's last context): jump somewhere else
            start = rng.randrange(len(source) - ORDER)
            out.extend(source[start : start + ORDER])
            continue
        out.append(rng.choice(nexts))
    return "".join(out[:length])


def naive_lengths(text: str, corpus: str) -> list[int]:
    """Matching statistics by substring search, the baseline."""
    out, previous = [], 0
    for i in range(len(text)):
        length = max(previous - 1, 0)
        while i + length < len(text) and text[i : i + length + 1] in corpus:
            length += 1
        out.append(length)
        previous = length
    return out


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10], help="million chars")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-chars", type=int, default=500)
    parser.add_argument("--data-dir", default=os.environ.get("CHARGEN_DATA", str(SHARED)))
    args = parser.parse_args()
    print(describe())
    pool = corpus_pool(Path(args.data_dir), max(args.sizes) * MILLION)
    markov = markov_text(pool[:MILLION], QUERY_CHARS)
    print(
        f"corpus: {args.data_dir} (tinyshakespeare, nietzsche) + Python {sys.version.split()[0]} "
        f"stdlib sources; MB = 10^6 characters; queries of {QUERY_CHARS} characters; "
        f"baseline on the first {args.baseline_chars}, scaled x{QUERY_CHARS / args.baseline_chars:g}"
    )
    print(
        "\n| corpus | UTF-8 MB | build s | build s/MB | index MB | index bytes/char | save s "
        "| mmap load ms | query | mean match | longest | query s/10K | baseline s/10K | speedup |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        corpus = pool[: size * MILLION]
        megabytes = len(corpus.encode("utf-8", "surrogatepass")) / MILLION
        build_s, index = timed(lambda c=corpus: CorpusIndex.build(c), args.repeats)
        with tempfile.TemporaryDirectory(prefix="chargen-novelty-") as tmp:
            save_s, _ = timed(lambda i=index, t=tmp: i.save(t), 1)
            load_s, _ = timed(lambda t=tmp: CorpusIndex.load(t), args.repeats)
        start = len(corpus) // 2
        queries = {"markov": markov, "verbatim": corpus[start : start + QUERY_CHARS]}
        for name, text in queries.items():
            query_s, (lengths, _) = timed(
                lambda i=index, t=text: i.matching_statistics(t), args.repeats
            )
            part = text[: args.baseline_chars]
            base_s, expected = timed(lambda t=part, c=corpus: naive_lengths(t, c), 1)
            if index.matching_statistics(part)[0] != expected:
                raise SystemExit(f"{name}: the index and the baseline disagree")
            base_10k = base_s * QUERY_CHARS / len(part)
            query_10k = query_s * QUERY_CHARS / len(text)
            print(
                f"| {size} M chars | {megabytes:.2f} | {build_s:.2f} | {build_s / megabytes:.2f} "
                f"| {index.nbytes / MILLION:.1f} | {index.nbytes / len(corpus):.1f} "
                f"| {save_s:.2f} | {load_s * 1000:.1f} | {name} "
                f"| {statistics.mean(lengths):.1f} | {max(lengths)} | {query_10k:.3f} "
                f"| {base_10k:.2f} | {base_10k / query_10k:.0f}x |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
