"""The node collector: sources of raw events (eBPF, JSONL trace, synthetic) and
the batching publisher that puts them on the EVENTS stream."""
