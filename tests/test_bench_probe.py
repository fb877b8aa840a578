"""The token-semantics probe: labels, subsampling, pooling on the tiny model, the classifier."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import soundfile as sf
import torch

from benchmarks import data, probe, report
from semanticodec.codec import SemantiCodec
from tiny import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


def clip(file: str, source: str, domain: str = "speech", duration: float = 2.0) -> data.Clip:
    return data.Clip(file, domain, duration, None, "test", source)


def test_labels_from_sources_and_names():
    assert probe.speech_source_label(clip("speech/asterisk_9.wav", "asterisk")) == "asterisk-en"
    assert probe.speech_source_label(clip("speech/asterisk-fr_x.wav", "asterisk-fr")) == "asterisk-fr"
    assert probe.speech_source_label(clip("speech/fillets-cs_a.wav", "fillets-cs")) == "fillets-cs"
    assert probe.speech_source_label(clip("speech/librivox_a.wav", "librivox")) is None
    assert probe.speech_source_label(clip("music/music_a.wav", "music", "music")) is None
    assert probe.sonic_pi_family(clip("sound/sound_ambi_glass_rub.wav", "sound", "sound")) == "ambi"
    assert probe.sonic_pi_family(clip("sound/sound_bd_808.wav", "sound", "sound")) == "bd"
    assert probe.sonic_pi_family(clip("sound/hydrogen_TomLow-3.wav", "hydrogen", "sound")) is None
    assert probe.sonic_pi_family(clip("sound/sound_noprefix.wav", "sound", "sound")) is None


def test_file_group_joins_pieces_of_one_file():
    a = probe.file_group(clip("music/music_song_part00.wav", "music", "music"))
    b = probe.file_group(clip("music/music_song_part01.wav", "music", "music"))
    c = probe.file_group(clip("music/music_other.wav", "music", "music"))
    assert a == b != c


def _pool() -> tuple[list[data.Clip], list[str]]:
    clips, labels = [], []
    for source, n in (("asterisk", 30), ("asterisk-fr", 3)):
        for i in range(n):
            clips.append(clip(f"speech/{source}_{i}.wav", source))
            labels.append("speech")
    for song in range(3):
        for part in range(10):
            clips.append(clip(f"music/music_s{song}_part{part:02d}.wav", "music", "music"))
            labels.append("music")
    return clips, labels


def test_balanced_subsample_is_deterministic_and_spreads():
    clips, labels = _pool()
    picked = probe.balanced_subsample(clips, labels, 6, seed=0)
    assert picked == probe.balanced_subsample(clips, labels, 6, seed=0)
    assert picked != probe.balanced_subsample(clips, labels, 6, seed=1)
    chosen = [clips[i] for i in picked]
    speech = [c for c in chosen if c.domain == "speech"]
    music = [c for c in chosen if c.domain == "music"]
    assert len(speech) == len(music) == 6
    assert sum(c.source == "asterisk-fr" for c in speech) == 3  # sources take turns
    assert len({probe.file_group(c) for c in music}) == 3  # songs take turns
    assert len(probe.balanced_subsample(clips, labels, 1000, seed=0)) == len(clips)
    with pytest.raises(ValueError, match="labels"):
        probe.balanced_subsample(clips, labels[:-1], 6, seed=0)


def test_build_tasks_drops_small_families_with_a_note():
    clips = [clip(f"sound/sound_loop_{i}.wav", "sound", "sound") for i in range(7)]
    clips += [clip(f"sound/sound_drum_{i}.wav", "sound", "sound") for i in range(6)]
    clips += [clip("sound/sound_sn_dub.wav", "sound", "sound")]
    tasks, notes = probe.build_tasks(clips, probe.ProbeConfig(max_per_class=6))
    assert [t.name for t in tasks] == ["Sonic Pi family"]
    assert sorted(set(tasks[0].labels)) == ["drum", "loop"] and len(tasks[0].clips) == 12
    assert any("sn (1)" in n for n in notes)
    assert any("'domain'" in n for n in notes) and any("'speech source'" in n for n in notes)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="max_per_class"):
        probe.ProbeConfig(max_per_class=1)
    with pytest.raises(ValueError, match="folds"):
        probe.ProbeConfig(folds=1)


def test_token_embeddings_and_mel_statistics_on_tiny_model():
    model = tiny_model()
    codec = SemantiCodec(model, device="cpu")
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    tokens = codec.encode(audio, sample_rate=16000).tokens
    pooled = probe.token_embeddings(model, tokens)
    dim_s = model.semantic.codebook.shape[1]
    dim_a = model.acoustic.codebook.shape[-1]
    assert pooled["semantic"].shape == (2 * dim_s,)
    assert pooled["acoustic"].shape == (2 * dim_a,)
    assert pooled["semantic+acoustic"].shape == (2 * dim_s + 2 * dim_a,)
    vectors = model.semantic.lookup(torch.from_numpy(tokens[None, :, 0])).numpy()[0]
    np.testing.assert_allclose(pooled["semantic"][:dim_s], vectors.mean(0), rtol=1e-5, atol=1e-6)
    bag = pooled["bag of ids"]
    assert bag.shape == (model.config.semantic_vocab_size,)
    np.testing.assert_allclose((bag**2).sum(), 1.0, rtol=1e-5)
    assert probe.mel_statistics(audio).shape == (128,)
    with pytest.raises(ValueError, match="shape"):
        probe.token_embeddings(model, tokens[:, :1])


def test_probe_separates_separable_features_and_not_shuffled_labels():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 40)
    centres = {"a": 0.0, "b": 3.0, "c": -3.0}
    features = rng.standard_normal((labels.size, 10)) + np.array([centres[y] for y in labels])[:, None] * (np.arange(10) < 2)
    groups = [f"f{i}" for i in range(labels.size)]
    good = probe.probe_accuracy(features, labels, groups, folds=5, seed=0)
    assert good.mean > 0.9 and good.folds == 5 and good.chance == pytest.approx(1 / 3)
    noise = probe.probe_accuracy(rng.standard_normal((labels.size, 10)), rng.permutation(labels), groups, folds=5, seed=0)
    assert abs(noise.mean - 1 / 3) < 0.2
    with pytest.raises(ValueError, match="2 classes"):
        probe.probe_accuracy(features, ["a"] * labels.size, groups)
    with pytest.raises(ValueError, match="2 source files"):
        probe.probe_accuracy(features, labels, ["g"] * labels.size)


def test_replace_section_appends_then_replaces_only_its_own_section():
    document = "# Results\n\n## Other\n\ntext\n"
    once = report.replace_section(document, probe.SECTION + "\n\nold\n")
    assert once == document + "\n" + probe.SECTION + "\n\nold\n"
    middle = report.replace_section(once + "\n## Later\n\nkept\n", probe.SECTION + "\n\nnew\n")
    assert middle == document + "\n" + probe.SECTION + "\n\nnew\n\n## Later\n\nkept\n"


def test_main_end_to_end_on_a_tiny_corpus(tmp_path):
    from semanticodec.weights import save_safetensors

    checkpoint = tmp_path / "tiny.safetensors"
    save_safetensors(tiny_model(), checkpoint)
    corpus = tmp_path / "corpus"
    rng = np.random.default_rng(0)
    clips = []
    for domain, source, scale in (("speech", "asterisk", 0.05), ("speech", "fillets-nl", 0.1), ("music", "music", 0.2), ("sound", "sound", 0.4)):
        (corpus / domain).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            name = f"{domain}/{source}_{'loop' if i % 2 else 'drum'}_{i}.wav"
            sf.write(corpus / name, (rng.standard_normal(8000) * scale).astype(np.float32), 16000)
            clips.append(data.Clip(name, domain, 0.5, None, "test", source))
    (corpus / "manifest.json").write_text(json.dumps({"size": "test", "seed": 0, "clips": [asdict(c) for c in clips]}))
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Other\n\ntext\n")
    argv = ["--corpus", str(corpus), "--checkpoint", str(checkpoint), "--max-per-class", "2", "--folds", "2", "--results", str(results)]
    assert probe.main(argv) == 0
    text = results.read_text()
    assert text.startswith("# Results\n\n## Other\n\ntext\n\n## Token-semantics probe\n")
    assert "| domain | 3 | 6 | 2 |" in text and "| speech source | 2 | 4 | 2 |" in text
    assert "Sonic Pi families with fewer than 6 clips left out: drum (1), loop (1)" in text
    assert probe.main(["--corpus", str(tmp_path / "missing"), "--checkpoint", str(checkpoint), "--results", str(results)]) == 2
    assert probe.main(argv[:4] + ["--max-per-class", "1"]) == 2
