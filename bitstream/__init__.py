"""The .scdc bitstream: a packed, versioned, streamable container for SemantiCodec tokens."""
