"""Acoustic branch: official keys, full-size tr100 parity (LSTM input, pre-VQ, ids), batching."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from benchmarks.fill import fill, fill_module
from parity import assert_parity, reference, rel_l2, shared_path
from semanticodec.acoustic import (
    AUDIOMAE_PREFIX,
    RECURRENCE_CHUNK,
    UNUSED_OFFICIAL_KEYS,
    AcousticConfig,
    AcousticEncoder,
    acoustic_state_dict,
    lstm_direction,
)
from semanticodec.conditioning import valid_tokens

ACOUSTIC_TIE = 1e-5
"""Positions whose float64 acoustic margin is below this are exempt from id equality (README §7)."""


def _official_entries(token_rate: int) -> list[tuple[str, tuple[int, ...]]]:
    schema = json.loads(shared_path("reference", f"schema_tr{token_rate}.json").read_text())
    return [(key, tuple(shape)) for key, shape, _ in schema["encoder"]["entries"]]


def _filled(config: AcousticConfig) -> AcousticEncoder:
    with torch.device("meta"):
        enc = AcousticEncoder(config)
    enc.to_empty(device="cpu")
    fill_module(enc, "")
    return enc.eval()


@pytest.fixture(scope="module")
def tr100() -> dict:
    """Full-size tr100 encoder with the reference weights, run once on windows 0 and 1 (B = 2)."""
    ref = reference("tr100_encode")
    enc = _filled(AcousticConfig.for_token_rate(100))
    centroids = torch.from_numpy(fill("semantic_codebook", (4096, 768)))
    semantic_ids = torch.from_numpy(ref["tokens_untrimmed"][0, :, 0]).reshape(2, 512)
    features = torch.cat([torch.from_numpy(ref[f"audiomae_repr_w{w}"][:, 1:]) for w in (0, 1)])
    valid_len = valid_tokens(torch.from_numpy(ref["padding_cutoff"]), 512)
    with torch.inference_mode():
        lstm_in = enc.lstm_input(features, centroids[semantic_ids], valid_len)
        start = time.perf_counter()
        pre_vq = enc.project(lstm_in)
        seconds = time.perf_counter() - start
        ids = enc.quantize(pre_vq)
    print(f"\nLSTM+linear tr100, batch of 2 windows: {seconds:.2f} s ({seconds / 2:.2f} s per window)")
    return {"enc": enc, "ref": ref, "lstm_in": lstm_in, "pre_vq": pre_vq, "ids": ids, "valid_len": valid_len}


# --- keys and sizes -----------------------------------------------------------------------


def test_config_for_token_rate() -> None:
    assert AcousticConfig.for_token_rate(100) == AcousticConfig(768, 4, 8192) == AcousticConfig()
    assert AcousticConfig.for_token_rate(50) == AcousticConfig(1536, 3, 8192)
    assert AcousticConfig.for_token_rate(25) == AcousticConfig(3072, 2, 8192)
    with pytest.raises(ValueError, match="token_rate"):
        AcousticConfig.for_token_rate(40)
    with pytest.raises(ValueError, match="feature_dim"):
        AcousticConfig(feature_dim=0)


@pytest.mark.parametrize("token_rate", [100, 50, 25])
def test_state_dict_is_the_official_encoder_minus_audiomae_and_ema(token_rate: int) -> None:
    official = _official_entries(token_rate)
    with torch.device("meta"):
        enc = AcousticEncoder(AcousticConfig.for_token_rate(token_rate))
    ours = [(key, tuple(t.shape)) for key, t in enc.state_dict().items()]
    kept = [(k, s) for k, s in official if not k.startswith(AUDIOMAE_PREFIX) and k not in UNUSED_OFFICIAL_KEYS]
    assert ours == kept  # same keys, shapes and order
    dropped = {k for k, _ in official if not k.startswith(AUDIOMAE_PREFIX)} - {k for k, _ in ours}
    assert dropped == set(UNUSED_OFFICIAL_KEYS)


def test_acoustic_state_dict_loads_strictly() -> None:
    config = AcousticConfig(feature_dim=8, lstm_layers=2, codebook_size=16)
    source = AcousticEncoder(config)
    official = {
        "audiomae.model.cls_token": torch.zeros(1, 1, 8),
        **source.state_dict(),
        "quantizer._codebook.initted": torch.tensor(True),
        "quantizer._codebook.cluster_size": torch.ones(1, 16),
        "quantizer._codebook.embed_avg": torch.zeros(1, 16, 8),
    }
    target = AcousticEncoder(config)
    target.load_state_dict(acoustic_state_dict(official), strict=True)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    with pytest.raises(ValueError, match="mapping"):
        acoustic_state_dict([("encoder.weight_ih_l0", torch.zeros(1))])  # type: ignore[arg-type]


# --- full-size parity (tr100) -----------------------------------------------------------------


def test_lstm_input_window1_parity(tr100: dict) -> None:
    assert tr100["valid_len"].tolist() == [512, 138]
    assert_parity(tr100["lstm_in"][1:2], tr100["ref"]["lstm_in_w1"], "lstm_in_w1", tol=0.0)
    assert bool((tr100["lstm_in"][1, 138:] == -1).all())
    assert not bool((tr100["lstm_in"][0] == -1).all(dim=-1).any())


def test_pre_vq_parity(tr100: dict) -> None:
    assert tr100["pre_vq"].shape == (2, 512, 768)
    assert_parity(tr100["pre_vq"], tr100["ref"]["vq_in"], "vq_in (pre-VQ, windows 0+1)")


def test_acoustic_ids_parity(tr100: dict) -> None:
    ref = tr100["ref"]
    expected = torch.from_numpy(ref["tokens_untrimmed"][0, :, 1]).reshape(2, 512)
    exempt = torch.from_numpy(ref["acoustic_margin_f64"] < ACOUSTIC_TIE).reshape(2, 512)
    ids = tr100["ids"]
    assert ids.dtype == torch.int64 and ids.shape == (2, 512)
    differ = ids != expected
    print(f"\nacoustic ids: {int(exempt.sum())} positions exempt (margin_f64 < {ACOUSTIC_TIE:g}), "
          f"{int(differ.sum())} differ, {int((differ & exempt).sum())} of them exempt")
    assert not bool((differ & ~exempt).any())


def test_quantize_of_official_pre_vq_is_exact(tr100: dict) -> None:
    """The quantizer alone, on the official pre-VQ vectors: every id equal, near-ties included."""
    ref = tr100["ref"]
    with torch.inference_mode():
        ids = tr100["enc"].quantize(torch.from_numpy(ref["vq_in"]))
    np.testing.assert_array_equal(ids.reshape(-1).numpy(), ref["tokens_untrimmed"][0, :, 1])


def test_single_window_equals_batched(tr100: dict) -> None:
    enc, ref = tr100["enc"], tr100["ref"]
    with torch.inference_mode():
        start = time.perf_counter()
        pre_vq = enc.project(tr100["lstm_in"][1:2])
        seconds = time.perf_counter() - start
        ids = enc.quantize(pre_vq)
    print(f"\nLSTM+linear tr100, one window (B = 1): {seconds:.2f} s")
    err = rel_l2(pre_vq, tr100["pre_vq"][1:2])
    print(f"B=1 vs B=2 pre-VQ, window 1: rel L2 = {err:.3e}")
    assert err <= 1e-5
    exempt = torch.from_numpy(ref["acoustic_margin_f64"][512:] < ACOUSTIC_TIE)
    assert not bool(((ids[0] != tr100["ids"][1]) & ~exempt).any())


def test_lookup_is_codebook_row(tr100: dict) -> None:
    enc = tr100["enc"]
    embed = torch.from_numpy(fill("quantizer._codebook.embed", (1, 8192, 768))[0])
    ids = torch.tensor([[0, 8191, 5], [7, 7, 4096]])
    assert torch.equal(enc.lookup(ids), embed[ids])
    assert torch.equal(enc.codebook, embed)


# --- behaviour on a small model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def small() -> AcousticEncoder:
    torch.manual_seed(0)
    return AcousticEncoder(AcousticConfig(feature_dim=16, lstm_layers=2, codebook_size=64)).eval()


def _inputs(batch: int, n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n, dim, generator=g), torch.randn(batch, n, dim, generator=g)


def test_forward_composes_the_stages(small: AcousticEncoder) -> None:
    feats, sem = _inputs(3, 20, 16, 1)
    valid_len = torch.tensor([20, 7, 0])
    with torch.inference_mode():
        out = small(feats, sem, valid_len)
        pre_vq = small.project(small.lstm_input(feats, sem, valid_len))
    assert out.ids.shape == (3, 20) and out.vectors.shape == out.pre_vq.shape == (3, 20, 16)
    assert torch.equal(out.pre_vq, pre_vq)
    assert torch.equal(out.ids, small.quantize(pre_vq))
    assert torch.equal(out.vectors, small.lookup(out.ids))


@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_bilstm_equals_nn_lstm(threads: int) -> None:
    """On CPU without grad the BiLSTM is lstm_direction per direction (the two directions on two
    threads when allowed): nn.LSTM's result, over more steps than one input chunk; the
    hidden-to-hidden weights are laid out column-major in place (same values), the parameters
    stay normal tensors, training (nn.LSTM with grad) still works, and the thread setting is
    restored."""
    torch.manual_seed(0)
    enc = AcousticEncoder(AcousticConfig(feature_dim=16, lstm_layers=2, codebook_size=64)).eval()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    steps = 2 * RECURRENCE_CHUNK + 21
    x = torch.randn(3, steps, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        reference = enc.encoder(x)[0]
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            ours = enc._bilstm(x)
            assert torch.get_num_threads() == threads
        with torch.no_grad():
            assert torch.equal(enc._bilstm(x), ours)
        with_grad = enc._bilstm(x)  # with grad: nn.LSTM itself
    finally:
        torch.set_num_threads(saved)
    assert ours.shape == (3, steps, 64)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)
    assert not torch.equal(ours, reference)  # another summation order: a different code path ran
    weight = enc.encoder.weight_hh_l1_reverse
    assert weight.shape == (128, 32) and weight.stride() == (1, 128) and not weight.is_inference()
    assert all(torch.equal(enc.state_dict()[k], v) for k, v in before.items())
    assert with_grad.requires_grad and torch.allclose(with_grad, reference, atol=1e-6)
    with_grad.sum().backward()
    assert enc.encoder.weight_hh_l0.grad is not None


def test_recurrent_weights_load_column_major() -> None:
    """The hidden-to-hidden matrices are column-major from construction on, and loading
    (load_state_dict, SemantiCodecModel.load_weights) copies into that layout: no re-layout,
    no second copy at the first encode."""
    config = AcousticConfig(feature_dim=4, lstm_layers=2, codebook_size=8)
    source, target = AcousticEncoder(config), AcousticEncoder(config)
    weight = target.encoder.weight_hh_l1_reverse
    assert weight.shape == (32, 8) and weight.stride() == (1, 32)
    target.load_state_dict(source.state_dict())
    assert target.encoder.weight_hh_l1_reverse is weight and weight.stride() == (1, 32)
    assert torch.equal(weight, source.encoder.weight_hh_l1_reverse)
    assert target._recurrent_weights(1, "_reverse").data_ptr() == weight.data_ptr()


@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_direction_is_one_nn_lstm_direction(reverse: bool) -> None:
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(5, 7, batch_first=True, bidirectional=True)
    x = torch.randn(2, RECURRENCE_CHUNK + 3, 5)
    suffix = "_reverse" if reverse else ""
    weights = [getattr(lstm, f"{name}_l0{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    with torch.no_grad():
        expected = lstm(x)[0][..., 7:] if reverse else lstm(x)[0][..., :7]
        out = lstm_direction(x, weights[0], weights[1].t().contiguous(), weights[2] + weights[3], reverse)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_batch_items_are_independent(small: AcousticEncoder) -> None:
    feats, sem = _inputs(3, 20, 16, 2)
    valid_len = [20, 11, 3]
    with torch.inference_mode():
        batched = small(feats, sem, valid_len)
        for i, n in enumerate(valid_len):
            single = small(feats[i : i + 1], sem[i : i + 1], [n])
            torch.testing.assert_close(single.pre_vq, batched.pre_vq[i : i + 1], rtol=1e-5, atol=1e-6)
            assert torch.equal(single.ids, batched.ids[i : i + 1])


def test_padding_rows_ignore_their_content(small: AcousticEncoder) -> None:
    feats, sem = _inputs(1, 20, 16, 3)
    other_feats, other_sem = feats.clone(), sem.clone()
    other_feats[:, 9:] = 123.0
    other_sem[:, 9:] = -7.0
    with torch.inference_mode():
        a = small(feats, sem, [9])
        b = small(other_feats, other_sem, [9])
        unmarked = small(feats, sem, None)
    assert torch.equal(a.pre_vq, b.pre_vq)
    # the backward LSTM direction carries the -1 rows into the valid ones (official behaviour)
    assert not torch.allclose(a.pre_vq[:, :9], unmarked.pre_vq[:, :9])


def test_quantize_nearest_code_and_first_on_ties() -> None:
    enc = AcousticEncoder(AcousticConfig(feature_dim=4, lstm_layers=1, codebook_size=6), quantize_chunk=3)
    codebook = torch.tensor(
        [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, -1.0], [0.5, 0.5, 0, 0]]
    )
    enc.quantizer._codebook.embed.copy_(codebook[None])
    x = torch.tensor([[[0.9, 0, 0, 0], [0, 0, 1.9, 0.1], [0, 0.1, 0, -3.0], [0.5, 0.5, 0, 0], [0, 0, 0, 0]]])
    # codes 0 and 2 are equal: the first wins; [0.5, 0.5] is exactly code 5 (clamped distance)
    expected = torch.tensor([[0, 3, 4, 5, 5]])
    assert torch.equal(enc.quantize(x), expected)
    brute = torch.cdist(x[0].double(), codebook.double()).argmin(dim=-1)
    assert torch.equal(enc.quantize(x)[0], brute)


def test_quantize_clamps_squared_distance_at_1e_8() -> None:
    """As vector-quantize-pytorch: distances below 1e-8 tie, and the first code wins."""
    enc = AcousticEncoder(AcousticConfig(feature_dim=2, lstm_layers=1, codebook_size=3))
    enc.quantizer._codebook.embed.copy_(torch.tensor([[[1.0, 1.0], [5e-5, 0.0], [0.0, 0.0]]]))
    # squared distances of the zero vector: 2, 2.5e-9, 0 -> clamped 2, 1e-8, 1e-8
    assert enc.quantize(torch.zeros(1, 1, 2)).item() == 1


def test_quantize_chunking_matches_brute_force() -> None:
    torch.manual_seed(4)
    whole = AcousticEncoder(AcousticConfig(feature_dim=12, lstm_layers=1, codebook_size=300))
    chunked = AcousticEncoder(whole.config, quantize_chunk=7)
    chunked.load_state_dict(whole.state_dict())
    x = torch.randn(3, 50, 12)
    ids = whole.quantize(x)
    assert torch.equal(ids, chunked.quantize(x))
    d = torch.cdist(x.reshape(-1, 12).double(), whole.codebook.double())
    top2 = d.topk(2, largest=False).values
    clear = (top2[:, 1] - top2[:, 0]) > 1e-5
    assert torch.equal(ids.reshape(-1)[clear], d.argmin(-1)[clear])


def test_bad_inputs_raise(small: AcousticEncoder) -> None:
    feats, sem = _inputs(2, 10, 16, 5)
    with pytest.raises(ValueError, match="same shape"):
        small(feats, sem[:, :5])
    with pytest.raises(ValueError, match="feature_dim"):
        small(feats[..., :8], sem[..., :8])
    with pytest.raises(ValueError, match=r"\[B, N, D\]"):
        small(feats[0], sem[0])
    with pytest.raises(ValueError, match=r"shape \[2\]"):
        small(feats, sem, [10])
    with pytest.raises(ValueError, match=r"\[0, 10\]"):
        small(feats, sem, [10, 11])
    with pytest.raises(ValueError, match="lstm_in"):
        small.project(feats)
    with pytest.raises(ValueError, match="pre_vq"):
        small.quantize(feats[..., :8])
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        small.lookup(torch.tensor([[64]]))
    with pytest.raises(ValueError, match="integer"):
        small.lookup(torch.tensor([[1.0]]))
    with pytest.raises(ValueError, match="quantize_chunk"):
        AcousticEncoder(small.config, quantize_chunk=0)


def test_factorised_codes_are_looked_up_by_cosine_in_the_low_dimensional_space() -> None:
    torch.manual_seed(5)
    config = AcousticConfig(feature_dim=12, lstm_layers=1, codebook_size=40, code_dim=4)
    enc = AcousticEncoder(config)
    keys = set(enc.state_dict())
    assert {"quantizer.in_proj.weight", "quantizer.out_proj.weight"} <= keys
    assert enc.quantizer._codebook.embed.shape == (1, 40, 4)
    enc.quantizer._codebook.embed.mul_(torch.rand(1, 40, 1) * 3)  # stored norms do not matter
    feats, sem = torch.randn(2, 30, 12), torch.randn(2, 30, 12)
    out = enc(feats, sem)
    projected = enc.quantizer.in_proj(out.pre_vq).detach()
    cosine = torch.nn.functional.normalize(projected, dim=-1) @ torch.nn.functional.normalize(enc.quantizer._codebook.embed[0], dim=-1).T
    assert torch.equal(out.ids, cosine.argmax(dim=-1))
    unit = torch.nn.functional.normalize(enc.quantizer._codebook.embed[0], dim=-1)
    assert torch.allclose(out.vectors, enc.quantizer.out_proj(unit[out.ids]), atol=1e-6)
    assert torch.allclose(enc.codebook[out.ids], out.vectors, atol=1e-6)
    assert enc.code_space(out.pre_vq).shape == (2, 30, 4)
    with pytest.raises(ValueError, match=r"\[B, N, 4\]"):
        enc.nearest(out.pre_vq)


def test_official_config_has_no_factorised_parts() -> None:
    with torch.device("meta"):
        enc = AcousticEncoder(AcousticConfig())
    assert not any(k.startswith(("quantizer.in_proj", "quantizer.out_proj")) for k in enc.state_dict())
    assert enc.config.lookup_dim == 768 and enc.quantizer._codebook.embed.shape == (1, 8192, 768)
