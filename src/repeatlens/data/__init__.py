"""Data: corpus loaders, tokenizer, token pools and the repetition mixture."""
