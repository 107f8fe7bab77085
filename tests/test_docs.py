"""Every Python example in the README and docs/ runs.

The examples of one page run in order in one namespace, as a reader would type them; a
``test_*`` function an example defines is then run too, with its pytest fixtures.
"""

import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
WITH_EXAMPLES = [p for p in PAGES if BLOCK.search(p.read_text())]


def test_docs_have_examples() -> None:
    assert len(WITH_EXAMPLES) >= 5


@pytest.mark.parametrize("page", WITH_EXAMPLES, ids=[p.name for p in WITH_EXAMPLES])
def test_page_examples_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for number, match in enumerate(BLOCK.finditer(page.read_text()), start=1):
        code = compile(match.group(1), f"{page.name} example {number}", "exec")
        exec(code, namespace)
    for name, value in namespace.items():
        if name.startswith("test_") and inspect.isfunction(value):
            fixtures = inspect.signature(value).parameters
            value(**{fixture: request.getfixturevalue(fixture) for fixture in fixtures})


def test_the_readme_names_every_extra_and_only_those() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    section = (ROOT / "README.md").read_text().split("## Add mediastreams to your project")[1]
    section = section.split("\n## ")[0]
    documented = set(re.findall(r"^\| `([a-z]+)` \|", section, re.M))
    assert documented == set(extras)
    assert "uv add mediastreams" in section and "pip install mediastreams" in section


def test_the_session_page_gives_the_default_rate_of_audio() -> None:
    from mediastreams.session import MediaStream

    default = inspect.signature(MediaStream.audio).parameters["sample_rate"].default
    page = (ROOT / "docs" / "session.md").read_text()
    assert f"mono PCM at {default} Hz" in page.replace("\n", " ")
