"""The public surface: sorted, documented, and nothing else leaks in."""

from __future__ import annotations

from pathlib import Path

import proctor

DOCS = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()


def test_all_is_sorted() -> None:
    assert proctor.__all__ == sorted(proctor.__all__)


def test_every_public_name_is_documented() -> None:
    for name in proctor.__all__:
        obj = getattr(proctor, name)
        assert name in DOCS, f"{name} is missing from docs/api.md"
        if callable(obj):
            assert obj.__doc__, f"{name} has no docstring"


def test_exception_tree() -> None:
    assert issubclass(proctor.Denied, proctor.DecisionError)
    assert issubclass(proctor.ReviewPending, proctor.DecisionError)
    assert issubclass(proctor.Rejected, proctor.DecisionError)
    for exc in (
        proctor.DecisionError,
        proctor.PolicyError,
        proctor.StoreError,
        proctor.NotFound,
        proctor.ConfigError,
    ):
        assert issubclass(exc, proctor.ProctorError)
    pending = proctor.ReviewPending("waiting", item_id="abc")
    assert pending.item_id == "abc"
    err = proctor.PolicyError("bad", source="p.yaml", line=3, column=7)
    assert (err.line, err.column, str(err)) == (3, 7, "p.yaml:3:7: bad")


def test_the_readme_lists_every_setting_as_declared() -> None:
    from proctor._settings import markdown_table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    listed = readme.split("<!-- settings: generated from proctor._settings.SETTINGS -->\n", 1)
    assert len(listed) == 2, "the README's settings table is missing"
    assert listed[1].split("\n<!-- /settings -->", 1)[0] == markdown_table()
