import os

import pytest
from hypothesis import settings

# On CI the property tests draw the same examples every run, so a landing never depends on
# luck; locally they explore new examples each time.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
