"""BiLSTM of the official 100 tokens/s acoustic encoder: this package's CPU recurrence against
``torch.lstm``, in alternating rounds of one process.

Variants (each the whole 4-layer BiLSTM over B windows of 512 steps, ``fill`` weights, no grad):

- ``nn.LSTM``: the module itself, as the official code runs it (oneDNN on CPU, the threads
  sharing every time step);
- ``torch.lstm per direction``: the two directions of a layer at once on two threads, one
  ``torch.lstm`` (oneDNN) call each: this package's path before :func:`lstm_direction`;
- ``lstm_direction``: ``AcousticEncoder._bilstm`` (the same two threads, this package's recurrence);
- ``in turn``: :func:`lstm_direction` one direction after the other, each step's product on all
  threads (one ``W_hh`` in flight instead of two; per-step barriers, which spin on a busy
  machine; slower, see ``benchmarks/RESULTS.md``).

After one warm-up call of each, prints per variant the median wall and process CPU seconds per
window, the ratio of each to the first variant's, the largest difference to ``nn.LSTM``'s output
(computed on one thread) and the peak memory a call added (VmHWM reset before each call). On a
machine shared with other jobs the CPU seconds are the steadier figure.

    python -m benchmarks.bench_encode --rounds 3
    python -m benchmarks.bench_encode --rounds 5 --variants "torch.lstm per direction" lstm_direction   # a busy machine
    python -m benchmarks.bench_encode --rounds 3 --variants lstm_direction "in turn"
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

from benchmarks.fill import fill_module
from semanticodec.acoustic import AcousticConfig, AcousticEncoder, lstm_direction


def build(token_rate: int = 100) -> AcousticEncoder:
    """The official acoustic encoder of ``token_rate`` with ``fill`` weights."""
    with torch.device("meta"):
        encoder = AcousticEncoder(AcousticConfig.for_token_rate(token_rate))
    encoder.to_empty(device="cpu")
    fill_module(encoder, "")
    return encoder.eval()


def torch_lstm_per_direction(encoder: AcousticEncoder, x: Tensor) -> Tensor:
    """The previous ``_bilstm``: per layer, one ``torch.lstm`` call per direction, on two threads."""
    lstm = encoder.encoder
    zeros = x.new_zeros(1, x.shape[0], lstm.hidden_size)

    def direction(h: Tensor, layer: int, suffix: str) -> Tensor:
        weights = [getattr(lstm, f"{name}_l{layer}{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        with torch.no_grad():
            source = h.flip(1) if suffix else h
            out = torch.lstm(source, (zeros, zeros), weights, True, 1, 0.0, False, False, True)[0]
        return out.flip(1) if suffix else out

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            h = x
            for layer in range(lstm.num_layers):
                runs = [pool.submit(direction, h, layer, suffix) for suffix in ("", "_reverse")]
                h = torch.cat([run.result() for run in runs], dim=-1)
    finally:
        torch.set_num_threads(threads)
    return h


def directions_in_turn(encoder: AcousticEncoder, x: Tensor) -> Tensor:
    """:func:`lstm_direction` per direction, one direction after the other, each step's products
    on all intra-op threads (one ``W_hh`` in flight instead of two)."""
    lstm = encoder.encoder
    hidden = lstm.hidden_size
    h = x
    for layer in range(lstm.num_layers):
        out = x.new_empty(x.shape[0], x.shape[1], 2 * hidden)
        for suffix in ("", "_reverse"):
            bias = getattr(lstm, f"bias_ih_l{layer}{suffix}") + getattr(lstm, f"bias_hh_l{layer}{suffix}")
            half = out[..., hidden:] if suffix else out[..., :hidden]
            lstm_direction(h, getattr(lstm, f"weight_ih_l{layer}{suffix}"), encoder._recurrent_weights(layer, suffix),
                           bias, bool(suffix), out=half)
        h = out
    return h


VARIANTS = {
    "nn.LSTM": lambda encoder, x: encoder.encoder(x)[0],
    "torch.lstm per direction": torch_lstm_per_direction,
    "lstm_direction": lambda encoder, x: encoder._bilstm(x),
    "in turn": directions_in_turn,
}


def memory_mib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in MiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024


def reset_peak() -> None:
    """Set VmHWM to the current RSS (Linux ``clear_refs`` 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1, help="windows per call")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="the first is the baseline of the ratios (nn.LSTM spins on a busy machine: leave it out there)")
    args = parser.parse_args()
    encoder = build()
    torch.set_num_threads(args.threads)  # after build: numba's fill resets the OpenMP thread count
    x = torch.randn(args.batch, 512, 2 * encoder.config.feature_dim, generator=torch.Generator().manual_seed(0))
    variants = {name: VARIANTS[name] for name in args.variants}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    added: dict[str, int] = {}
    error: dict[str, float] = {}
    with torch.no_grad():
        torch.set_num_threads(1)
        reference = encoder.encoder(x)[0]
        torch.set_num_threads(args.threads)
        for run in variants.values():  # warm-up; lstm_direction's first call lays out its weights
            run(encoder, x)
        for round_ in range(args.rounds):
            for name, run in variants.items():
                rss, _ = memory_mib()
                reset_peak()
                wall, cpu = time.perf_counter(), time.process_time()
                out = run(encoder, x)
                times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
                added[name] = max(added.get(name, 0), memory_mib()[1] - rss)
                error[name] = float((out - reference).abs().max())
                del out
            print(f"round {round_}: " + ", ".join(f"{n} {w:.2f} s ({c:.2f} CPU s)" for n, (w, c) in
                                                  ((n, t[-1]) for n, t in times.items())), flush=True)
    print(f"\nfill weights, official 100 tok/s BiLSTM (4 layers, H = 1536), B = {args.batch}, "
          f"{args.threads} threads, torch {torch.__version__}, {args.rounds} rounds alternating\n")
    print("| variant | wall s / window | CPU s / window | wall ratio | CPU ratio | peak added (MiB) | max diff to nn.LSTM |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = None
    for name, rows in times.items():
        wall = statistics.median(w for w, _ in rows) / args.batch
        cpu = statistics.median(c for _, c in rows) / args.batch
        base = base or (wall, cpu)
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {base[0] / wall:.2f}× | {base[1] / cpu:.2f}× | {added[name]} | {error[name]:.1e} |")


if __name__ == "__main__":
    main()
