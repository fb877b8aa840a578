"""Command line: ``train`` (k-means codebook from feature shards) and ``features`` (audio → shards).

Used as ``python -m semanticodec.kmeans train|features ...`` and, through :func:`configure_kmeans`
and :func:`run_kmeans`, as ``semanticodec kmeans train|features ...``. Each parser sets ``func``
to its handler, which takes the parsed namespace and returns an exit status; the handlers import
the trainer and the feature extractor when they run.

Several processes or machines: ``torchrun --nproc_per_node G -m semanticodec.kmeans train ...``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from semanticodec.commands import deprecated_alias

DEFAULT_EXTRACTOR = "semanticodec.codec:semantic_feature_extractor"
"""Factory ``(token_rate, checkpoint, device) -> extract`` of the model's AudioMAE features."""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``train`` command to ``subparsers`` and return its parser."""
    from semanticodec.kmeans.engines import ENGINES

    p = subparsers.add_parser(
        "train",
        help="train a k-means codebook on .npy feature shards",
        description="Train a k-means codebook (float32 [k, D]) on .npy shards of vectors.",
    )
    p.add_argument("shards", nargs="+", help=".npy files [N, D] or directories of them")
    vocab = p.add_argument("--semantic-vocab-size", type=_positive, metavar="V", help="number of centroids: the semantic vocabulary size (required)")
    deprecated_alias(p, "--k", vocab)
    p.add_argument("-o", "--output", required=True, help="output .npy file, or a directory that receives codebook_{V/2}_0.npy")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--niter", type=_positive, default=20, help="Lloyd iterations (default 20)")
    p.add_argument("--init", choices=("k-means++", "random"), default="k-means++", help="initialisation (default k-means++)")
    p.add_argument("--max-points-per-centroid", type=_positive, default=256, help="training sample is at most this times k (default 256)")
    p.add_argument("--all-points", action="store_true", help="train on every vector instead of a sample")
    p.add_argument("--sample-size", type=_positive, default=None, help="explicit training sample size")
    p.add_argument("--chunk-size", type=_positive, default=65536, help="vectors per assignment chunk (default 65536)")
    p.add_argument("--tol", type=float, default=0.0, help="stop when the objective improves by at most this fraction")
    p.add_argument("--engine", choices=ENGINES, default="auto", help="assignment engine (default auto)")
    state = p.add_argument("--state-file", default=None, help="k-means state .npz (default OUTPUT.ckpt.npz); an existing one is resumed")
    deprecated_alias(p, "--checkpoint", state)
    no_progress = p.add_argument("--no-progress", action="store_true", help="no progress bar")
    deprecated_alias(p, "--quiet", no_progress)
    p.set_defaults(func=run_train)
    return p


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``train``: writes the codebook on rank 0 and prints its path."""
    import torch.distributed as dist

    from semanticodec.distributed import join_torchrun
    from semanticodec.kmeans.codebook import save_codebook
    from semanticodec.kmeans.trainer import KMeansConfig, fit

    if args.semantic_vocab_size is None:
        raise ValueError("kmeans train needs --semantic-vocab-size")
    config = KMeansConfig(
        niter=args.niter,
        seed=args.seed,
        init=args.init,
        max_points_per_centroid=None if args.all_points else args.max_points_per_centroid,
        sample_size=args.sample_size,
        chunk_size=args.chunk_size,
        tol=args.tol,
        engine=args.engine,
    )
    out = Path(args.output)
    state_file = Path(args.state_file) if args.state_file else out.with_name(out.name + ".ckpt.npz")
    _, created = join_torchrun()
    try:
        result = fit(args.shards, args.semantic_vocab_size, config, state_file=state_file, progress=not args.no_progress)
        if not dist.is_initialized() or dist.get_rank() == 0:
            path = save_codebook(result.centroids, out)
            print(
                f"{path}: {result.centroids.shape[0]} x {result.centroids.shape[1]} float32, "
                f"objective {result.objective[-1]:.9g} after {result.iterations} iterations ({result.engine})"
            )
    finally:
        if created:
            dist.destroy_process_group()
    return 0


def add_features_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``features`` command to ``subparsers`` and return its parser."""
    p = subparsers.add_parser(
        "features",
        help="extract AudioMAE features of an audio folder into .npy shards",
        description="Run the AudioMAE branch over a folder of audio and write the stacked features as "
        ".npy shards with manifest.jsonl (file, shard, offset, count). Re-running resumes.",
    )
    p.add_argument("audio_dir", help="folder searched recursively for audio files")
    p.add_argument("-o", "--output", required=True, help="output folder for the shards and the manifest")
    p.add_argument("--token-rate", type=int, choices=(100, 50, 25), default=100, help="token rate (default 100: D=768)")
    p.add_argument("--shard-rows", type=_positive, default=65536, help="rows per shard (default 65536)")
    p.add_argument("--checkpoint", default=None, help="model checkpoint folder (default: found by semanticodec)")
    p.add_argument("--device", default="cpu", help="torch device of the model (default cpu)")
    p.add_argument(
        "--extractor",
        default=DEFAULT_EXTRACTOR,
        help=f"MODULE:FACTORY, FACTORY(token_rate, checkpoint, device) -> extract(waveform) (default {DEFAULT_EXTRACTOR})",
    )
    no_progress = p.add_argument("--no-progress", action="store_true", help="no progress bar")
    deprecated_alias(p, "--quiet", no_progress)
    p.set_defaults(func=run_features)
    return p


def load_extractor(spec: str, token_rate: int, checkpoint: str | None, device: str):
    """Build ``extract`` from the factory ``MODULE:FACTORY``; a clear error if it does not exist."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--extractor must look like MODULE:FACTORY, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ValueError(f"feature extractor {spec!r} is not available: {err}") from None
    factory = getattr(module, attribute, None)
    if factory is None:
        hint = "; this version of semanticodec has no AudioMAE feature extractor yet, give one with --extractor" if spec == DEFAULT_EXTRACTOR else ""
        raise ValueError(f"feature extractor {spec!r} is not available: {module_name} has no {attribute!r}{hint}")
    return factory(token_rate, checkpoint, device)


def run_features(args: argparse.Namespace) -> int:
    """Handler of ``features``."""
    from semanticodec.kmeans.features import extract_features

    extractor = load_extractor(args.extractor, args.token_rate, args.checkpoint, args.device)
    summary = extract_features(args.audio_dir, extractor, args.output, shard_rows=args.shard_rows, progress=not args.no_progress)
    print(
        f"{args.output}: {summary.files} files extracted ({summary.vectors} vectors, {len(summary.shards)} new shards), "
        f"{summary.skipped} already done, {summary.failed} unreadable"
    )
    return 0


def configure_kmeans(parser: argparse.ArgumentParser) -> None:
    """The ``train`` and ``features`` verbs under ``parser``."""
    verbs = parser.add_subparsers(dest="kmeans_command", required=True, metavar="VERB")
    add_train_parser(verbs)
    add_features_parser(verbs)


def run_kmeans(args: argparse.Namespace) -> int:
    """Run the verb parsed by :func:`configure_kmeans`."""
    return args.func(args)


def build_parser(prog: str = "python -m semanticodec.kmeans") -> argparse.ArgumentParser:
    """The stand-alone parser with both commands."""
    parser = argparse.ArgumentParser(prog=prog, description="Large-scale k-means for SemantiCodec's semantic codebooks.")
    configure_kmeans(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m semanticodec.kmeans``; bad input or a failed file operation exits with status 2
    and a one-line message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run_kmeans(args)
    except (ValueError, OSError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
