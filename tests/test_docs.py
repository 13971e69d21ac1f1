"""docs/ODD.md moves with the code: every parameter of the scenario schema's sections has a row in an ODD parameter
table with the schema's default, and the tables name no parameter the schema does not have."""

from __future__ import annotations

import re
from pathlib import Path

from abm.scenario import Scenario, _Section

ODD = Path(__file__).resolve().parents[1] / "docs" / "ODD.md"


def _documented() -> dict[tuple[str, str], str]:
    rows = re.findall(r"^\| `([a-z_]+)\.([A-Za-z_0-9]+)` \| ([^|]+) \|", ODD.read_text(), re.M)
    return {(section, key): default.strip() for section, key, default in rows}


def _schema() -> dict[tuple[str, str], object]:
    out = {}
    for name, field in Scenario.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, _Section):
            for key, f in section.model_fields.items():
                out[(name, key)] = f.default
    return out


def _same(doc: str, default: object) -> bool:
    try:
        return float(doc) == float(default)
    except (TypeError, ValueError):
        return doc == str(default)


def test_every_parameter_is_in_the_odd_with_its_default():
    doc, schema = _documented(), _schema()
    assert len(schema) > 100
    assert sorted(k for k in schema if k not in doc) == []
    assert sorted(k for k in doc if k not in schema) == []
    wrong = [(k, doc[k], schema[k]) for k in schema if not _same(doc[k], schema[k])]
    assert wrong == []
