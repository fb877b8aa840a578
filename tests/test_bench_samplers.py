"""The quality-versus-steps benchmark of the samplers, end to end on the tiny model."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import soundfile as sf

from benchmarks import bench_samplers, data
from benchmarks.bench_samplers import Row, Setting
from tiny import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


def row(sampler: str, steps: int, visqol: float, dnsmos: float, **setting) -> Row:
    clips = {"a": {"visqol": visqol, "dnsmos": dnsmos, "mel": 1.0}, "b": {"visqol": visqol, "dnsmos": dnsmos, "mel": 1.0}}
    return Row(Setting(sampler, steps, **setting), steps, 1.0, clips)


def test_choose_takes_the_cheapest_setting_within_the_tolerance():
    reference = row("ddim", 50, 2.0, 3.0)
    rows = [
        reference,
        row("ddim", 50, 1.5, 3.0, seed=1),  # another seed never counts
        row("unipc", 3, 1.85, 3.0),  # ViSQOL 0.15 below: out
        row("dpmpp-2m", 5, 1.95, 2.85),  # DNSMOS 0.15 below: out
        row("unipc", 8, 1.91, 2.95),
        row("dpmpp-2m", 8, 1.93, 2.95),  # same cost, better ViSQOL: chosen
        row("unipc", 10, 2.1, 3.1),
        row("unipc", 5, 2.5, 3.5, precision="bfloat16"),  # reduced precision never counts
    ]
    assert bench_samplers.choose(rows, reference) is rows[5]
    text = bench_samplers.render(rows, reference, rows[5], {"speech": ["a"], "sound": ["b"]}, "cmd", "(header)")
    assert "| **dpmpp-2m 8** | 8 |" in text and "| ddim 50, seed 1 | 50 |" in text and "| unipc 5, bfloat16 |" in text
    assert "**dpmpp-2m 8** (8 model evaluations per window instead of 50)" in text
    assert "Not measured" not in text
    missing = {Setting("ddim", 25): 26, Setting("unipc", 5): 5}
    text = bench_samplers.render(rows, reference, rows[5], {"speech": ["a"], "sound": ["b"]}, "cmd", "(header)", missing)
    assert "Not measured (the run was stopped before it finished): ddim 25, unipc 5." in text
    assert "The choice is provisional: unipc 5 cost no more and were not measured." in text


def test_provenance_names_the_command_of_each_row():
    """A resumed run keeps the command that measured each reused row."""
    first, added = "`run A` (day 1, CPU A)", "`run B` (day 2, CPU B)"
    rows = [replace(row("ddim", 50, 2.0, 3.0), measured_by=first), replace(row("unipc", 3, 2.0, 3.0), measured_by=first)]
    assert bench_samplers.provenance(rows) == first
    rows.append(replace(row("unipc", 3, 2.0, 3.0, precision="mixed"), measured_by=added))
    assert bench_samplers.provenance(rows) == f"{first}: the other rows; {added}: unipc 3, mixed"


def test_evaluations_per_window():
    model = tiny_model()
    assert bench_samplers.evaluations(model, "ddim", 15) == 16  # the official spacing makes one more
    assert bench_samplers.evaluations(model, "ddim", 3) is None  # the official spacing fails
    assert bench_samplers.evaluations(model, "unipc", 3) == 3


def test_main_end_to_end_on_a_tiny_corpus(tmp_path, monkeypatch):
    from semanticodec.weights import save_safetensors

    checkpoint = tmp_path / "tiny.safetensors"
    save_safetensors(tiny_model(), checkpoint)
    corpus = tmp_path / "corpus"
    rng = np.random.default_rng(0)
    clips = []
    for domain, count in (("speech", 2), ("sound", 1)):
        (corpus / domain).mkdir(parents=True)
        for i in range(count):
            name = f"{domain}/{domain}_{i}.wav"
            sf.write(corpus / name, (rng.standard_normal(32000) * 0.1).astype(np.float32), 16000)
            clips.append(data.Clip(name, domain, 2.0, None, "test", domain))
    kept = [clips[0].file, clips[2].file]  # --per-domain 1: the first clip of each domain
    (corpus / "manifest.json").write_text(json.dumps({"size": "test", "seed": 0, "clips": [asdict(c) for c in clips]}))
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Other\n\ntext\n")
    argv = [
        "--corpus", str(corpus), "--checkpoint", str(checkpoint), "--samplers", "ddim", "unipc", "--steps", "3", "5",
        "--precision", "bfloat16", "--per-domain", "1", "--threads", "1", "--jobs", "2", "--results", str(results), "--output", str(tmp_path / "out"),
    ]
    assert bench_samplers.main(argv) == 0
    text = results.read_text()
    assert text.startswith("# Results\n\n## Other\n\ntext\n\n## Sampler quality versus steps\n")
    for label in ("ddim 50 |", "ddim 50, seed 1 |", "ddim 5 |", "unipc 3", "unipc 5", ", bfloat16"):
        assert label in text
    assert "ddim 3 |" not in text  # the official DDIM spacing cannot make 3 steps
    raw = json.loads((tmp_path / "out" / "samplers_corpus.json").read_text())
    assert len(raw["rows"]) == 6 and set(raw["rows"][0]["clips"]) == set(kept)
    assert raw["chosen"]["precision"] == "float32" and raw["identity"]["clips"] == sorted(kept)

    def no_decoding(*_):
        raise AssertionError("a finished row was decoded again")

    monkeypatch.setattr(bench_samplers, "decode_all", no_decoding)
    results.write_text("# Results\n")
    assert bench_samplers.main(argv) == 0  # resumed: every row comes from the JSON
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert [line for line in results.read_text().splitlines() if line.startswith("|")] == table
    without = [a for a in argv if a not in ("--precision", "bfloat16")]
    assert bench_samplers.main(without) == 0  # a row of a reduced precision measured before stays in the table
    assert [line for line in results.read_text().splitlines() if line.startswith("|")] == table
    record = tmp_path / "out" / "samplers_corpus.json"
    raw["rows"] = [r for r in raw["rows"] if (r["sampler"], r["steps"]) != ("unipc", 5)]
    record.write_text(json.dumps(raw))
    assert bench_samplers.main([*argv, "--report-only"]) == 0  # the table so far, nothing decoded
    text = results.read_text()
    assert "Not measured (the run was stopped before it finished): unipc 5." in text
    assert ") (the rows), `python -m benchmarks.bench_samplers --corpus" in text and "--report-only` (this table)" in text
    with pytest.raises(AssertionError, match="decoded again"):
        bench_samplers.main([*argv, "--fresh", "--jobs", "1"])  # in this process: decode_all is called here
