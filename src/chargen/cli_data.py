"""``chargen prepare`` and ``chargen corpora``: tokenise a corpus larger than memory into a
data folder (optionally with its novelty index), and list the named corpora.
"""

from __future__ import annotations

import argparse


def cmd_prepare(args: argparse.Namespace) -> int:
    from chargen.prepare import build_novelty_index, check_novelty_index, prepare

    if args.novelty_index:
        check_novelty_index(args.tokenizer, args.lines)
    meta = prepare(
        args.source,
        args.out,
        encoding=args.encoding,
        errors=args.errors,
        lowercase=args.lowercase,
        tokenizer=args.tokenizer,
        max_vocab=args.max_vocab,
        data_dir=args.data_dir,
        overwrite=args.overwrite,
        progress=not args.quiet,
        lines=args.lines,
    )
    items, lines_flag = (f", {meta['items']:,} items", " --lines") if args.lines else ("", "")
    print(
        f"{args.out}: {meta['tokens']:,} tokens ({meta['dtype']}), {meta['chars']:,} chars"
        f"{items}, vocabulary {meta['vocab_size']:,}; train with: chargen train {args.out} "
        f"--out RUN_DIR{lines_flag}"
    )
    if args.novelty_index:
        index = build_novelty_index(args.out)
        print(
            f"{index['path']}: novelty index over the {index['chars']:,} characters of the "
            f"training split, {index['bytes'] / 1e6:.1f} MB, built in {index['seconds']:.1f} s"
        )
    return 0


def cmd_corpora(args: argparse.Namespace) -> int:
    from chargen.corpus import list_corpora

    for entry in list_corpora(args.data_dir):
        print(f"{entry['name']:<16} {entry['description']}\n{'':<16} from: {entry['origin']}")
    return 0
