"""``python -m mediastreams``."""

from .cli import run

run()
