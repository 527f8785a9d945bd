"""atheris entry point for the ``trace`` target (see tests/fuzz/targets.py)."""

from tests.fuzz.harness import main

if __name__ == "__main__":
    main("trace")
