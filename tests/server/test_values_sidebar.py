"""The sidebar's promote refuses unusable values with a 400 and a message (issue 17): a
23-digit version, a version that is no number, a gate nested 5,000 levels deep or otherwise
beyond the condition language. Never a 500; the alias does not move."""

from __future__ import annotations

from typing import Any

import pytest

from tests.server.test_server_api import error

BAD_BODIES = [
    ({"version": "1" * 23, "alias": "champion"}, "version must be a model version number"),
    ({"version": "abc", "alias": "champion"}, "version must be a model version number"),
    ({"version": 2, "alias": "champion", "expected": "1" * 23}, "expected must be a model"),
    (
        {"version": "2", "alias": "champion", "gate": "not " * 5000 + "accuracy > 0.5"},
        "characters long",
    ),
    (
        {"version": "2", "alias": "champion", "gate": "not " * 400 + "accuracy > 0.5"},
        "nested too deeply",
    ),
    ({"version": "2", "alias": "champion", "gate": "accuracy > " + "9" * 400}, "too large"),
    ({"version": "2", "alias": "champion", "gate": "accuracy\x00 > 1"}, "not valid"),
    ({"version": "2", "alias": "champion", "gate": "__import__('os')"}, "only comparisons"),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
async def test_promote_refuses_bad_values_with_a_400(
    jp_fetch: Any, sidebar_project: Any, body: dict[str, Any], message: str
) -> None:
    root, _ = sidebar_project
    code, answer = await error(jp_fetch, "models", "iris-clf", "promote", method="POST", body=body)
    assert code == 400, answer
    assert message in answer["message"] and "\n" not in answer["message"]
    from jupyter_mlops.client import client as project_client
    from jupyter_mlops.config import load_config

    holder = project_client(load_config(root)).get_model_version_by_alias("iris-clf", "champion")
    assert str(holder.version) == "1"
