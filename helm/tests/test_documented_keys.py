"""Every values key the chart documents is set somewhere and accepted.

values.schema.json is the list of keys (it refuses any other). This checks
that the chart's README documents each of them, documents nothing else, and
that the every-key/ values files together set each of them, so that
test_app_accepts_config.py's `leadbridge check` on those files sees every
key the chart can write into config.toml. A key added to the schema without
a documented, application-accepted rendering fails here.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

import pytest

from conftest import CHART_DIR, validate_objects
from test_app_accepts_config import EVERY_KEY

SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())
README = (CHART_DIR / "README.md").read_text()
# Helm's own; not the chart's.
NOT_CHART_KEYS = {"global"}


def schema_leaves(node: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[str]:
    """Dotted paths of the schema's leaves; <org> for an organization's name."""
    props = node.get("properties")
    if props:
        for key, sub in props.items():
            yield from schema_leaves(sub, (*path, key))
        return
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("properties"):
        yield from schema_leaves(extra, (*path, "<org>"))
        return
    yield ".".join(path)


LEAVES = sorted(set(schema_leaves(SCHEMA)) - NOT_CHART_KEYS)


def values_paths(values: Any, path: tuple[str, ...] = ()) -> Iterator[str]:
    """Every dotted path set in a values file (organizations' names as <org>)."""
    yield ".".join(path)
    if isinstance(values, dict):
        for key, sub in values.items():
            name = "<org>" if path == ("organizations",) else key
            yield from values_paths(sub, (*path, name))


def test_the_schema_has_keys():
    assert len(LEAVES) > 100
    assert "organizations.<org>.email.smtpUrl" in LEAVES


def test_every_key_files_set_every_schema_key():
    assert EVERY_KEY, "no every-key/*.yaml"
    set_somewhere = set()
    for values in EVERY_KEY.values():
        set_somewhere.update(values_paths(values))
    missing = [leaf for leaf in LEAVES if leaf not in set_somewhere]
    assert missing == [], f"keys no every-key/*.yaml file sets: {missing}"


def documented_keys() -> set[str]:
    """The keys in the first column of README.md's values table."""
    keys = set()
    for line in README.splitlines():
        cells = line.split("|")
        if len(cells) > 3 and cells[0] == "":
            keys.update(re.findall(r"`([A-Za-z][A-Za-z0-9<>.]*)`", cells[1]))
    return keys


@pytest.mark.parametrize("leaf", LEAVES)
def test_readme_documents_the_key(leaf):
    assert leaf in documented_keys(), f"{leaf} is not in the values table of the chart's README"


def test_readme_documents_no_other_key():
    prefixes = {leaf.split(".")[0] for leaf in LEAVES}
    stale = sorted(
        k for k in documented_keys()
        if k.split(".")[0] in prefixes and k not in LEAVES and not any(
            leaf.startswith(k + ".") for leaf in LEAVES)
    )
    assert stale == [], f"documented but not in values.schema.json: {stale}"


@pytest.mark.parametrize("name", sorted(EVERY_KEY))
def test_every_key_files_render_valid_kubernetes(render, name):
    checked = validate_objects(render(EVERY_KEY[name]))
    assert any(c.startswith("Deployment/") for c in checked)
