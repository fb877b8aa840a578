"""Model configuration JSON: fields added after the first release leave the JSON (and so the
model ids) of configurations that keep their defaults unchanged, and round-trip when set."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import pytest

from semanticodec.acoustic import AcousticConfig
from semanticodec.config import ModelConfig
from semanticodec.serialise import added_field, config_dict


@dataclass(frozen=True)
class _Inner:
    width: int = 4
    shape: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class _Outer:
    name: str
    inner: _Inner = field(default_factory=_Inner)
    later: int | None = added_field(None)
    flag: bool = added_field(False)


def test_added_fields_are_left_out_at_their_default() -> None:
    assert config_dict(_Outer("a")) == {"name": "a", "inner": {"width": 4, "shape": [1, 2]}}
    assert config_dict(_Outer("a", later=3, flag=True)) == {
        "name": "a", "inner": {"width": 4, "shape": [1, 2]}, "later": 3, "flag": True,
    }
    with pytest.raises(TypeError, match="not a dataclass"):
        config_dict({"name": "a"})


def test_new_acoustic_field_keeps_official_json() -> None:
    for rate in (100, 50, 25):
        config = ModelConfig.official(rate)
        data = json.loads(config.to_json())
        assert set(data["acoustic"]) == {"feature_dim", "lstm_layers", "codebook_size"}
        assert "semantic_only_decoding" not in data
        assert ModelConfig.from_json(config.to_json()) == config


def test_new_fields_round_trip_and_change_the_model_id() -> None:
    small = ModelConfig.small()
    factorised = replace(small, acoustic=replace(small.acoustic, code_dim=16), semantic_only_decoding=True)
    data = json.loads(factorised.to_json())
    assert data["acoustic"]["code_dim"] == 16 and data["semantic_only_decoding"] is True
    assert ModelConfig.from_json(factorised.to_json()) == factorised
    assert factorised.model_id != small.model_id


@pytest.mark.parametrize("code_dim", [0, 1, 128, 300, 2.5, True])
def test_code_dim_is_checked(code_dim) -> None:
    with pytest.raises(ValueError, match="code_dim"):
        AcousticConfig(feature_dim=128, lstm_layers=1, codebook_size=64, code_dim=code_dim)
