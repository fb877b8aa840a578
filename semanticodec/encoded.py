"""``EncodedAudio``: the tokens of one input and what decoding them needs, saved and loaded as
``.scdc`` files (numpy, the bitstream and the entropy tables only: no model code)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

import numpy as np

from semanticodec.bitstream import EntropyTables, Header, read_file, write_file
from semanticodec.bitstream.stream import Layers
from semanticodec.constants import SAMPLE_RATE, token_samples
from semanticodec.deprecation import renamed_attribute
from semanticodec.entropy_tables import find_tables, tables_for_model


@dataclass(frozen=True)
class EncodedAudio:
    """Tokens of one input and what a bitstream needs to decode them.

    ``tokens`` is int64 ``[T, 2]``: column 0 semantic ids in [0, V), column 1 acoustic ids
    in [0, 8192). At 100 tok/s 8 consecutive rows are the 8 frequency bands of one 0.16 s
    column (4 at 50 tok/s; at 25 tok/s 4 rows span 0.32 s). ``sample_count`` and
    ``sample_rate`` describe the original input (before resampling to 16 kHz).
    """

    tokens: np.ndarray
    token_rate: int
    semantic_vocab_size: int
    acoustic_vocab_size: int
    model_id: bytes
    sample_count: int
    sample_rate: int

    def header(self, packet_columns: int | None = None) -> Header:
        """The ``.scdc`` header of these tokens (``packet_columns``: None = the format's default)."""
        return Header(
            token_rate=self.token_rate,
            semantic_vocab_size=self.semantic_vocab_size,
            acoustic_vocab_size=self.acoustic_vocab_size,
            model_id=self.model_id,
            sample_count=self.sample_count,
            sample_rate=self.sample_rate,
            packet_columns=packet_columns,
        )

    def save(
        self,
        path: str | os.PathLike,
        packet_columns: int | None = None,
        overwrite: bool = True,
        tables: EntropyTables | Literal["model"] | None = "model",
    ) -> int:
        """Write the tokens as a ``.scdc`` file (atomically); returns its size in bytes.

        ``tables``: entropy tables the packets are range coded with where that makes them
        smaller; ``"model"``: the installed tables of this model (fixed width when it has none);
        None: fixed width (format version 1).
        """
        if tables == "model":
            tables = tables_for_model(self.model_id, self.token_rate, self.semantic_vocab_size, self.acoustic_vocab_size)
        return write_file(path, self.tokens, self.header(packet_columns), overwrite=overwrite, tables=tables)

    @classmethod
    def load(cls, path: str | os.PathLike, layers: Layers = "both") -> EncodedAudio:
        """The tokens of a ``.scdc`` file (BitstreamError, a ValueError, when it is damaged or
        names entropy tables that are not installed); ``layers="semantic"`` reads the semantic
        layer only (acoustic ids are then 0)."""
        header, tokens = read_file(path, layers=layers, tables=find_tables)
        sample_count = header.sample_count or token_samples(len(tokens), header.token_rate)
        sample_rate = header.sample_rate if header.sample_count else SAMPLE_RATE
        return cls(tokens, header.token_rate, header.semantic_vocab_size, header.acoustic_vocab_size, header.model_id, sample_count, sample_rate)

    @property
    def sample_count_16k(self) -> int:
        """Length of the input at 16 kHz."""
        return math.ceil(self.sample_count * SAMPLE_RATE / self.sample_rate)

    @property
    def duration(self) -> float:
        """Duration of the original audio in seconds."""
        return self.sample_count / self.sample_rate

    num_samples = renamed_attribute("EncodedAudio", "num_samples", "sample_count")
