"""Entropy coding benchmark: .scdc sizes of held-out audio coded with the bundled model, what
each context of the model buys, coding speed, and sizes of streams written as they arrive.

    python -m benchmarks.bench_entropy [--train TOKENS/] [--corpus DIR] [--cache DIR]

``--train`` is a token dataset of the training split (``semanticodec tokenize``; never the
benchmark files; without it table 2 is left out), ``--corpus`` the held-out benchmark corpus
(default: the full one). Prints Markdown tables (the "Entropy coding" section of
benchmarks/RESULTS.md):

1. Sizes per domain: every corpus file is encoded with the bundled model (as ``semanticodec
   compress`` does; tokens cached in ``--cache``) and written as a fixed-width stream
   (``--no-entropy``) and with the bundled model's tables; the coded stream is decoded and
   checked to give the identical tokens.
2. Contexts: tables learned from ``--train`` with the contexts added one at a time, and with
   each one left out of the full set; bits per id of each layer and file size against fixed
   width, on the same held-out files.
3. Speed: encode and decode of the held-out tokens, repeated to one hour of audio, coded and
   fixed width, in MB/s (of the stream) and tokens/s (both layers counted); best of 3 runs.
4. Streaming: the held-out tokens written through a ``StreamWriter`` in chunks of 8, 16, 32
   and 512 pairs at 100 tokens/s (``StreamingEncoder`` writes a 10.24 s window, 512 pairs, at
   a time in exact mode and one block of 0.16, 0.32 or 0.64 s in low-latency mode), at the
   default packet length and at 2 and 1 columns per packet: total size against fixed width,
   with a header that names the tables at once and with the writer's default (the header
   held back until the packets of the first write show whether coding pays).
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks import data
from semanticodec.bitstream import EntropyTables, Header, StreamWriter, decode, encode, learn_tables
from semanticodec.bitstream.stream import coded_layers
from semanticodec.bitstream.tables import CONTEXTS

DOMAINS = ("speech", "music", "sound")
ADDED = ((), ("band",), ("band", "previous_column"), ("band", "previous_column", "previous_band"),
         ("band", "previous_column", "previous_band", "semantic"), CONTEXTS)
"""The contexts added one at a time (the last is the full model)."""


def held_out_tokens(corpus: Path, cache: Path) -> list[tuple[str, np.ndarray, Header]]:
    """(domain, tokens [T, 2], header) of every corpus file, encoded with the bundled model."""
    from semanticodec.codec import SemantiCodec

    cache.mkdir(parents=True, exist_ok=True)
    codec = None
    items = []
    for clip in data.read_manifest(corpus):
        stored = cache / (clip.file.replace("/", "__") + ".npz")
        if not stored.is_file():
            codec = codec or SemantiCodec.from_pretrained(device="cpu")
            encoded = codec.encode(str(corpus / clip.file))
            np.savez(stored, tokens=encoded.tokens, count=encoded.sample_count, rate=encoded.sample_rate,
                     model=np.frombuffer(encoded.model_id, np.uint8))
        saved = np.load(stored)
        header = Header(100, 4096, 4096, model_id=saved["model"].tobytes(), sample_count=int(saved["count"]),
                        sample_rate=int(saved["rate"]))
        items.append((clip.domain, saved["tokens"], header))
    return items


def sizes(items, tables: EntropyTables | None) -> dict[str, tuple[int, int, int]]:
    """Per domain and "all": (pairs, stream bytes, fixed-width stream bytes); checks the round trip."""
    totals = {d: [0, 0, 0] for d in (*DOMAINS, "all")}
    for domain, tokens, header in items:
        coded = encode(tokens, header, tables)
        fixed = encode(tokens, header)
        np.testing.assert_array_equal(decode(coded, tables=tables)[1], tokens)
        for key in (domain, "all"):
            totals[key][0] += len(tokens)
            totals[key][1] += len(coded)
            totals[key][2] += len(fixed)
    return {k: tuple(v) for k, v in totals.items()}


def layer_bits(items, tables: EntropyTables) -> tuple[float, float]:
    """Bits per semantic and per acoustic id of the coded layers (coded packets only count their
    layers; fixed-width packets count their full width)."""
    bits = [0.0, 0.0]
    ids = 0
    for _, tokens, header in items:
        size = header.packet_pairs
        for start in range(0, len(tokens), size):
            packet = tokens[start : start + size]
            layers = coded_layers(header, packet, tables, 1 << 20)
            bits[0] += 8 * len(layers[0])
            bits[1] += 8 * len(layers[1])
            ids += len(packet)
    return bits[0] / ids, bits[1] / ids


def load_train(root: Path) -> list[np.ndarray]:
    from semanticodec.dataset import TokenDataset

    dataset = TokenDataset(root)
    return [dataset.tokens(i) for i in range(len(dataset))]


def contexts_table(items, train: list[np.ndarray], model_id: bytes) -> list[str]:
    rows = ["| contexts | semantic bits/id | acoustic bits/id | speech | music | sound | all |", "|---|---:|---:|---:|---:|---:|---:|"]
    fixed = sizes(items, None)
    rows.append("| none (fixed width, 12 + 12 bits) | 12 | 12 | " + " | ".join("100 %" for _ in (*DOMAINS, "all")) + " |")
    configurations = [(" + ".join(c) or "base (one row for all bands)", c) for c in ADDED]
    configurations += [(f"all but {c}", tuple(x for x in CONTEXTS if x != c)) for c in CONTEXTS]
    for name, contexts in configurations:
        tables = learn_tables(train, 100, 4096, 4096, model_id, contexts)
        result = sizes(items, tables)
        semantic, acoustic = layer_bits(items, tables)
        shares = [f"{100 * result[d][1] / fixed[d][2]:.1f} %" for d in (*DOMAINS, "all")]
        rows.append(f"| {name} | {semantic:.2f} | {acoustic:.2f} | " + " | ".join(shares) + " |")
    return rows


def speed_table(items, tables: EntropyTables, repeats: int = 3) -> list[str]:
    tokens = np.concatenate([t for _, t, _ in items])
    tokens = np.concatenate([tokens] * -(-180_000 // len(tokens)))[:180_000]  # one hour at 100 tok/s
    header = Header(100, 4096, 4096, model_id=tables.model_id)
    rows = ["| stream | bytes | encode (s) | decode (s) | encode MB/s | decode MB/s | encode Mtok/s | decode Mtok/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, using in (("fixed width", None), ("entropy coded", tables)):
        stream = encode(tokens, header, using)
        decode(stream, tables=tables)
        encode_s = min(_timed(lambda: encode(tokens, header, using)) for _ in range(repeats))
        decode_s = min(_timed(lambda: decode(stream, tables=tables)) for _ in range(repeats))
        mb = len(stream) / 1e6
        rows.append(f"| {name} | {len(stream)} | {encode_s:.3f} | {decode_s:.3f} | {mb / encode_s:.2f} | {mb / decode_s:.2f} | "
                    f"{2 * len(tokens) / encode_s / 1e6:.3f} | {2 * len(tokens) / decode_s / 1e6:.3f} |")
    return rows


def streaming_table(items, tables: EntropyTables) -> list[str]:
    rows = ["| packet columns | pairs per write | fixed width (bytes) | tables named at once | header held back (default) "
            "| files the default writes at fixed width |", "|---:|---:|---:|---:|---:|---:|"]
    for columns in (None, 2, 1):
        for step in (8, 16, 32, 512):
            fixed = named = held = uncoded = 0
            for _, tokens, header in items:
                header = header if columns is None else replace(header, packet_columns=columns)
                fixed += len(encode(tokens, header))
                named += len(_streamed(tokens, replace(header, table_id=tables.table_id), tables, step))
                data = _streamed(tokens, header, tables, step)
                held += len(data)
                uncoded += data[4] == 1
            rows.append(f"| {header.packet_columns} | {step} | {fixed} | {named} ({100 * (1 - named / fixed):.1f} % saved) "
                        f"| {held} ({100 * (1 - held / fixed):.1f} % saved) | {uncoded} of {len(items)} |")
    return rows


def _streamed(tokens: np.ndarray, header: Header, tables: EntropyTables, step: int) -> bytes:
    """The stream of ``tokens`` written through a StreamWriter ``step`` pairs per ``write``."""
    buffer = io.BytesIO()
    with StreamWriter(buffer, header, tables) as writer:
        for start in range(0, len(tokens), step):
            writer.write(tokens[start : start + step])
    return buffer.getvalue()


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    from semanticodec.entropy_tables import tables_for_model
    from semanticodec.weights import default_model_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, help="token dataset of the training split (for the contexts table)")
    parser.add_argument("--corpus", type=Path, default=data.default_corpus_dir("full"), help="held-out corpus folder")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "semanticodec-bench" / "entropy-tokens",
                        help="where the held-out tokens are cached")
    args = parser.parse_args(argv)
    config = default_model_config()
    tables = tables_for_model(config.model_id, config.token_rate, config.semantic_vocab_size, config.acoustic_vocab_size)
    if tables is None:
        raise SystemExit("the bundled model has no entropy tables (run semanticodec learn-tables ... --into it)")
    items = held_out_tokens(args.corpus, args.cache)
    hours = sum(len(t) for _, t, _ in items) / 50 / 3600
    print(f"Held-out: {len(items)} files of {args.corpus} ({hours * 60:.1f} min); tables {tables.table_id.hex()}.\n")
    result = sizes(items, tables)
    print("| domain | pairs | fixed width (bytes) | entropy coded (bytes) | coded / fixed | saved | bitrate fixed → coded (bps) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for domain in (*DOMAINS, "all"):
        pairs, coded, fixed = result[domain]
        seconds = pairs / 50
        print(f"| {domain} | {pairs} | {fixed} | {coded} | {100 * coded / fixed:.1f} % | {100 * (1 - coded / fixed):.1f} % | "
              f"{8 * fixed / seconds:.0f} → {8 * coded / seconds:.0f} |")
    print()
    if args.train is not None:
        print("\n".join(contexts_table(items, load_train(args.train), config.model_id)))
        print()
    print("\n".join(speed_table(items, tables)))
    print()
    print("\n".join(streaming_table(items, tables)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
