"""Performance benchmarks of btc_ai: batched evaluation, ES generations and the default training."""
