"""The ``semanticodec download`` sub-command: fetch official weights ahead of time.

``semanticodec download --token-rate R --semantic-vocab-size V`` fetches (and verifies) the three files of one
official configuration into the Hugging Face cache, ``--all`` those of all twelve; each file's
path is printed, so that a machine can go offline afterwards (``HF_HUB_OFFLINE=1``; offline,
the command only checks and lists what is cached). The conversion to safetensors happens at the
first load (:mod:`semanticodec.hub`).
"""

from __future__ import annotations

import argparse

from semanticodec.commands import EXIT_OK, deprecated_alias
from semanticodec.constants import OFFICIAL_VOCAB_SIZES, TOKEN_RATES


def configure_download(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token-rate", type=int, choices=TOKEN_RATES, help="tokens per second")
    vocab = parser.add_argument("--semantic-vocab-size", type=int, choices=OFFICIAL_VOCAB_SIZES, help="semantic vocabulary size")
    deprecated_alias(parser, "--vocab", vocab)
    parser.add_argument("--all", action="store_true", help="every token rate and vocabulary (16 GB)")


def run_download(args: argparse.Namespace) -> int:
    from semanticodec import hub

    if args.all == (args.token_rate is not None or args.semantic_vocab_size is not None):
        raise ValueError("give either --token-rate and --semantic-vocab-size, or --all")
    if not args.all and (args.token_rate is None or args.semantic_vocab_size is None):
        raise ValueError("--token-rate and --semantic-vocab-size are both required (or --all)")
    configs = [(r, v) for r in TOKEN_RATES for v in OFFICIAL_VOCAB_SIZES] if args.all else [(args.token_rate, args.semantic_vocab_size)]
    for rate, vocab in configs:
        files = hub.fetch(rate, vocab)
        hub.verify(rate, vocab, files)
        print(f"{rate} tok/s, vocabulary {vocab}:")
        for path in (files.encoder, files.decoder, files.codebook):
            print(f"  {path}")
    return EXIT_OK

