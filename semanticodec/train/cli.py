"""``semanticodec train <stage>``: every training stage from the command line.

Stages ``mae``, ``vae``, ``vocoder`` and ``ldm`` run the shared loop (resumable from
``OUT/checkpoint.pt``, log in ``OUT/log.csv``, weights in ``OUT/<stage>.safetensors``) and
work under ``torchrun`` (one process per device; gloo on CPU, NCCL on GPU). ``codebook``
runs k-means on the trained AudioMAE's features; ``assemble`` joins the results into one
inference file. Every stage run records its configuration in ``OUT/run.json`` and, resumed,
checks that it continues that run (:mod:`semanticodec.train.runconfig`). ``pack`` and ``burst``
(:mod:`~semanticodec.train.burst_cli`) take the ldm stage to a GPU lent for minutes.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from semanticodec.commands import deprecated_alias
from semanticodec.constants import WINDOW_SAMPLES
from semanticodec.train.options import add_preset_options, codebook_tensor, crop_sampler, domain_weights, load_weights, model_config, resolve

STAGE_CLASSES = {"mae": "MAEStage", "vae": "VAEStage", "vocoder": "VocoderStage", "ldm": "LDMStage"}
LOOP_STAGES = tuple(STAGE_CLASSES)


def _common(parser: argparse.ArgumentParser, loop: bool) -> None:
    parser.add_argument("--data", required=True, help="training manifest (corpus manifest.json, its folder, or a list of audio paths)")
    parser.add_argument("-o", "--output", dest="out", metavar="OUTPUT", required=True, type=Path, help="output folder (run.json, checkpoint, log, weights)")
    add_preset_options(
        parser,
        "training preset: small, official, tiny (default: as --config), or a file: the run.json of a run, "
        "a JSON object of preset fields, or a stage's exported .safetensors",
    )
    parser.add_argument("--batch-size", type=int, help="crops per step and process (sets batch_size)")
    parser.add_argument("--seed", type=int, help="data and noise seed (sets seed)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--domain-weights", type=domain_weights, help="sampling weight per domain, e.g. speech=0.5,music=0.3,sound=0.2")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    if loop:
        steps = parser.add_argument("--train-steps", dest="steps", type=int, help="total optimizer steps (sets steps)")
        deprecated_alias(parser, "--steps", steps)
        parser.add_argument("--crop-seconds", type=float, help="crop length in seconds (sets crop_seconds)")
        parser.add_argument("--lr", type=float, help="learning rate (sets learning_rate)")
        parser.add_argument("--init", type=Path, help="start from these exported weights (.safetensors)")


def _configure(stage: str):
    def configure(parser: argparse.ArgumentParser) -> None:
        _common(parser, stage in LOOP_STAGES)
        if stage in ("codebook", "ldm"):
            parser.add_argument(
                "--mae", required=True, type=Path, help="AudioMAE weights (mae.safetensors of the mae stage, or a model file)"
            )
        if stage == "codebook":
            parser.add_argument("--windows", type=int, help="10.24 s windows to collect features from (sets windows)")
            parser.add_argument("--niter", type=int, help="k-means iterations (sets niter)")
        if stage == "ldm":
            parser.add_argument(
                "--vae", required=True, type=Path, help="VAE with its encoder: vae.safetensors or checkpoint.pt of the vae stage"
            )
            parser.add_argument(
                "--codebook", required=True, type=Path,
                help="semantic codebook: .npy of the codebook stage, or a model .safetensors (its semantic.codebook)",
            )
            parser.add_argument("--windows", type=int, help="10.24 s windows to pre-encode (sets windows)")
            parser.add_argument(
                "--decay-steps", type=int,
                help="step where the cosine learning-rate decay reaches its floor (sets decay_steps; default: --train-steps)",
            )

    return configure


INPUTS = ("data", "domain_weights", "init", "mae", "vae", "codebook")
"""Options naming a run's inputs, recorded in its run.json (those the stage takes)."""


def _document(stage: str, args: argparse.Namespace, config, preset) -> dict[str, object]:
    """The run.json of this invocation; a resumed run's file must agree with it."""
    from semanticodec.train.runconfig import check_resume, input_path, run_document

    inputs = {key: getattr(args, key) for key in INPUTS if hasattr(args, key)}
    inputs = {key: value if key == "domain_weights" else input_path(value) for key, value in inputs.items()}
    document = run_document(stage, config, preset, inputs)
    check_resume(args.out, document)
    return document


def _run(stage: str):
    def run(args: argparse.Namespace) -> int:
        from semanticodec.train.loop import setup_distributed, train
        from semanticodec.train.runconfig import write_run

        module = importlib.import_module(f"semanticodec.train.{stage}")
        config, preset = resolve(stage, module, args)
        document = _document(stage, args, config, preset)
        distributed = setup_distributed(args.device)
        progress = not args.no_progress
        if stage == "codebook":
            sampler = crop_sampler(args, WINDOW_SAMPLES, preset.batch_size, preset.seed, 0)
            audiomae = load_weights(args.mae, "AudioMAE")
            if distributed.is_main:
                write_run(args.out, document)
            path = module.train_codebook(config, audiomae, sampler, preset, args.out, distributed.device, progress)
            print(f"codebook: {path}")
            return 0
        init = load_weights(args.init, "initial") if args.init else None
        if stage == "ldm":
            codebook = codebook_tensor(args.codebook)
            sampler = _windows(args, config, preset, codebook, distributed, progress)
            trainer = module.LDMStage(config, preset, distributed, init, codebook=codebook, windows=sampler.windows)
        else:
            sampler = crop_sampler(args, preset.crop_samples, preset.batch_size, preset.seed, distributed.rank)
            trainer = getattr(module, STAGE_CLASSES[stage])(config, preset, distributed, init)
        if distributed.is_main:
            write_run(args.out, document)
        meta = {"model_config": config.to_json(), "inputs": json.dumps(document["inputs"])}
        path = train(trainer, sampler, preset, args.out, distributed, progress=progress, metadata=meta)
        if distributed.is_main:
            print(f"{stage}: {path}")
        return 0

    return run


def _windows(args: argparse.Namespace, config, preset, codebook, distributed, progress: bool):
    """The LDM's cached windows: ``OUT/windows.pt``, computed on the first run (rank 0)."""
    import torch

    from semanticodec.model import SemantiCodecModel
    from semanticodec.train.ldm import CachedWindows, encode_windows, load_windows, save_windows

    path = args.out / "windows.pt"
    count = preset.windows
    if distributed.is_main and not path.is_file():
        args.out.mkdir(parents=True, exist_ok=True)
        model = SemantiCodecModel(config, codebook, with_vae_encoder=True)
        model.load_weights(load_weights(args.mae, "AudioMAE", "audiomae"), ("audiomae.",))
        model.load_weights(load_weights(args.vae, "VAE", "vae"), ("vae.",))
        model.to(distributed.device).eval()
        with torch.no_grad():
            windows = encode_windows(model, crop_sampler(args, WINDOW_SAMPLES, 8, preset.seed + 1, 0), count, progress=progress)
        save_windows(windows, path)
    distributed.barrier()
    return CachedWindows(load_windows(path), preset.batch_size, preset.seed, distributed.rank)


def _configure_assemble(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="small", help="model sizes: small, official, or a ModelConfig JSON file")
    parser.add_argument("--codebook", type=Path, help="semantic codebook .npy (default: the --base model's)")
    parser.add_argument(
        "stages", nargs="+", type=Path,
        help="the .safetensors of the mae, vae, vocoder and ldm stages (for ldm and vocoder also a running checkpoint.pt)",
    )
    parser.add_argument(
        "--base", type=Path,
        help="an assembled model (.safetensors) giving the modules no stage file gives, e.g. the bundled model with a retrained vocoder",
    )
    parser.add_argument("-o", "--output", required=True, type=Path, help="inference weights to write (.safetensors)")
    parser.add_argument("--dtype", default="float16", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("-f", "--force", action="store_true", help="overwrite the output")


def _run_assemble(args: argparse.Namespace) -> int:
    from semanticodec.train.assemble import assemble

    model = assemble(model_config(args.config), args.stages, args.codebook, args.output, args.dtype, args.force, args.base)
    print(json.dumps({"output": str(args.output), "name": model.config.name, "model_id": model.config.model_id.hex()}))
    return 0


def _configure_compact(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="checkpoint.pt of a training run")
    parser.add_argument(
        "-o", "--output", required=True, type=Path,
        help="compact checkpoint to write (to resume, put it in place of OUT/checkpoint.pt)",
    )
    parser.add_argument("-f", "--force", action="store_true", help="overwrite the output")


def _run_compact(args: argparse.Namespace) -> int:
    from semanticodec.atomic import check_output
    from semanticodec.train.loop import compact_checkpoint

    if not args.checkpoint.is_file():
        raise ValueError(f"checkpoint not found: {args.checkpoint}")
    check_output(args.output, [args.checkpoint], args.force)
    compact_checkpoint(args.checkpoint, args.output)
    print(json.dumps({"output": str(args.output), "bytes": args.output.stat().st_size, "source_bytes": args.checkpoint.stat().st_size}))
    return 0


STAGE_HELP = {
    "mae": "pre-train AudioMAE by masked autoencoding",
    "codebook": "train the semantic k-means codebook on AudioMAE features",
    "vae": "train the mel VAE",
    "vocoder": "train the HiFi-GAN vocoder",
    "ldm": "train the acoustic encoder + VQ with the latent diffusion UNet",
}


def configure_train(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for stage, text in STAGE_HELP.items():
        p = sub.add_parser(stage, help=text, description=text)
        _configure(stage)(p)
        p.set_defaults(stage_run=_run(stage))
    p = sub.add_parser("assemble", help="join the stage outputs into one inference file")
    _configure_assemble(p)
    p.set_defaults(stage_run=_run_assemble)
    p = sub.add_parser("compact", help="write a training checkpoint compactly, for resuming on another machine")
    _configure_compact(p)
    p.set_defaults(stage_run=_run_compact)
    from semanticodec.train import burst_cli

    burst_cli.configure(sub)


def run_train(args: argparse.Namespace) -> int:
    return args.stage_run(args)
