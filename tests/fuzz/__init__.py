"""Coverage-guided fuzzing (atheris) of every decoder that reads bytes from outside.

Targets live in :mod:`tests.fuzz.targets` (pure properties, importable without
atheris); ``fuzz_<target>.py`` wraps one of them for libFuzzer. See docs/fuzzing.md.
"""
