"""Neural-network building blocks of SemantiCodec."""
