"""``semanticodec train pack`` and ``semanticodec train burst``: the LDM stage on a machine lent
for minutes. ``pack`` (here) writes a travel pack (:mod:`semanticodec.train.pack`); ``burst``
(there) trains from it for a fixed wall time (:mod:`semanticodec.train.burst`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from semanticodec.constants import WINDOW_SAMPLES
from semanticodec.train.options import add_preset_options, codebook_tensor, crop_sampler, domain_weights, load_weights, resolve

MIB = 1 << 20


def configure(sub: argparse._SubParsersAction) -> None:
    """Add the ``pack`` and ``burst`` subcommands to ``semanticodec train``."""
    text = "write a travel pack (windows of audio as Opus, the weights to start from) for a GPU burst of the ldm stage"
    p = sub.add_parser("pack", help=text, description=text)
    _configure_pack(p)
    p.set_defaults(stage_run=_run_pack, batch_size=None)
    text = "train the ldm stage from a travel pack for a fixed wall time (on a lent GPU)"
    p = sub.add_parser("burst", help=text, description=text)
    _configure_burst(p)
    p.set_defaults(stage_run=_run_burst)


def _configure_pack(parser: argparse.ArgumentParser) -> None:
    from semanticodec.train.pack import PackConfig

    default = PackConfig()
    parser.add_argument("--data", required=True, help="training manifest (corpus manifest.json, its folder, or a list of audio paths)")
    parser.add_argument("-o", "--output", dest="out", metavar="OUTPUT", required=True, type=Path, help="pack folder to write")
    add_preset_options(
        parser,
        "training preset of the ldm stage: small, official, tiny (default: as --config), or a file "
        "(a run's run.json, a JSON object of preset fields, or exported ldm weights)",
    )
    parser.add_argument("--seed", type=int, help="seed (overrides the preset; the crops are drawn with seed + 1)")
    parser.add_argument("--domain-weights", type=domain_weights, help="sampling weight per domain, e.g. speech=0.5,music=0.3,sound=0.2")
    parser.add_argument("--vae", required=True, type=Path, help="VAE with its encoder: vae.safetensors or checkpoint.pt of the vae stage")
    parser.add_argument("--mae", type=Path, help="AudioMAE weights (default: the bundled model's, which travels with the package)")
    parser.add_argument("--codebook", type=Path, help="semantic codebook .npy or model .safetensors (default: the bundled model's)")
    parser.add_argument(
        "--init", type=Path,
        help="LDM weights to continue from: checkpoint.pt of an ldm run (trained weights and codebook statistics) or ldm.safetensors",
    )
    parser.add_argument("--max-mib", type=float, default=default.max_bytes / MIB, help="size of the whole pack in MiB (default %(default)g)")
    parser.add_argument("--bitrate", type=float, default=default.bitrate_kbps, help="Opus bitrate in kbit/s (default %(default)g)")
    parser.add_argument("-f", "--force", action="store_true", help="replace an existing pack")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_pack(args: argparse.Namespace) -> int:
    from semanticodec.atomic import sha256_file
    from semanticodec.train import ldm
    from semanticodec.train.pack import PackConfig, check_pack_target, is_bundled, ldm_start_weights, pack_weights, write_pack
    from semanticodec.weights import DEFAULT_MODEL

    config, preset = resolve("ldm", ldm, args)
    pack_config = PackConfig(round(args.max_mib * MIB), args.bitrate, preset.seed + 1)
    check_pack_target(args.out, args.force)
    sources = {"mae": args.mae or DEFAULT_MODEL, "codebook": args.codebook or DEFAULT_MODEL}
    bundled = tuple(part for part, path in (("audiomae", sources["mae"]), ("codebook", sources["codebook"])) if is_bundled(path))
    start = ldm_start_weights(args.init) if args.init else None
    weights = pack_weights(
        config, load_weights(args.vae, "VAE", "vae"), load_weights(sources["mae"], "AudioMAE", "audiomae"), codebook_tensor(sources["codebook"]), start, bundled
    )
    info = {
        "preset": args.preset,
        "domain_weights": args.domain_weights,
        "frozen": {part: "bundled" if part in bundled else "pack" for part in ("audiomae", "codebook")},
        "bundled_sha256": sha256_file(DEFAULT_MODEL) if bundled else None,
        "sources": {"data": str(args.data), "vae": str(args.vae), "init": args.init and str(args.init), **{k: str(v) for k, v in sources.items()}},
    }
    sampler = crop_sampler(args, WINDOW_SAMPLES, 1, pack_config.seed, 0)
    summary = write_pack(args.out, sampler, weights, config, preset, info, pack_config, args.force, not args.no_progress)
    print(json.dumps(summary))
    return 0


def _configure_burst(parser: argparse.ArgumentParser) -> None:
    from semanticodec.train.burst import AUTOCAST, BurstConfig

    default = BurstConfig()
    parser.add_argument("pack", type=Path, help="travel pack folder (written by `semanticodec train pack`)")
    parser.add_argument("-o", "--output", dest="out", metavar="OUTPUT", required=True, type=Path, help="output folder")
    parser.add_argument("--minutes", type=float, default=default.minutes, help="wall time from start to the end of training (default %(default)g)")
    parser.add_argument("--batch-size", type=int, default=default.batch_size, help="windows per step (default %(default)d)")
    parser.add_argument("--lr", type=float, help="learning rate (default: the pack's preset's)")
    parser.add_argument("--warmup-steps", type=int, default=default.warmup_steps, help="learning-rate warm-up (default %(default)d)")
    parser.add_argument("--windows", type=int, help="encode the first N windows of the pack only (default: all)")
    parser.add_argument("--autocast", choices=sorted(AUTOCAST), default=default.autocast, help="autocast on CUDA (default %(default)s)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument(
        "--max-file-mib", type=float, default=default.max_file_bytes / MIB, help="split output files above this size (default %(default)g)"
    )
    parser.add_argument("-f", "--force", action="store_true", help="replace the outputs of an earlier burst in OUTPUT")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_burst(args: argparse.Namespace) -> int:
    from semanticodec.train.burst import BurstConfig, run_burst

    config = BurstConfig(
        minutes=args.minutes, batch_size=args.batch_size, learning_rate=args.lr, warmup_steps=args.warmup_steps,
        windows=args.windows, autocast=args.autocast, max_file_bytes=round(args.max_file_mib * MIB),
    )
    summary = run_burst(args.pack, args.out, config, args.device, args.force, not args.no_progress)
    print(json.dumps({k: summary[k] for k in ("steps", "stopped", "steps_per_second", "seconds", "files")}))
    return 0
