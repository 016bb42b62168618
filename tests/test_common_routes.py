"""Routes every role answers: welcome, ping, health, metrics, JSON errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from treq.testing import StubTreq

from stretchfs.health import Readiness
from stretchfs.metrics import new_registry
from tests.helpers import load_test_config, result_of


def _api(role: str, tmp_path) -> Any:
    """The role's API as its service builds it (the master's on no Redis: these routes
    never reach it)."""
    from twisted.internet.defer import maybeDeferred
    from twisted.internet.task import Clock

    from stretchfs.wire.http import make_http_client

    if role == "master":
        from stretchfs.master.api import MasterAPI

        return MasterAPI(load_test_config("master"), readiness=Readiness(),
                         metrics_registry=new_registry(process_metrics=False), redis=None,
                         clock=Clock(), run_blocking=maybeDeferred,
                         http=make_http_client(Clock()))
    if role == "prism":
        from tests.prism.harness import make_prism

        return make_prism(tmp_path).api
    from tests.store.harness import build

    return build(tmp_path, Clock()).api


def _get(api: object, path: str, method: str = "GET") -> tuple[int, bytes, object]:
    stub = StubTreq(api.app.resource())  # type: ignore[attr-defined]
    response = result_of(stub.request(method, "http://node" + path))
    return response.code, result_of(stub.content(response)), response.headers


ROLES = ["master", "prism", "store"]


@pytest.mark.parametrize("role", ["prism", "store"])
def test_welcome_names_the_version(role: str, tmp_path) -> None:
    """GET and POST / answer the welcome message with the version."""
    api = _api(role, tmp_path)
    for method in ("GET", "POST"):
        code, body, _ = _get(api, "/", method)
        assert code == 200
        assert json.loads(body) == {"message": "Welcome to StretchFS version 1.4.0"}


@pytest.mark.parametrize("role", ROLES)
def test_ping_answers_pong(role: str, tmp_path) -> None:
    """GET /ping answers {"pong": "pong"} as JSON."""
    code, body, headers = _get(_api(role, tmp_path), "/ping")
    assert code == 200
    assert json.loads(body) == {"pong": "pong"}
    assert headers.getRawHeaders(b"content-type")[0].startswith(b"application/json")


@pytest.mark.parametrize("role", ROLES)
def test_health_is_503_with_reason_until_ready(role: str, tmp_path) -> None:
    """/health answers 503 naming what blocks it, then 200 once nothing does."""
    api = _api(role, tmp_path)
    readiness = api.readiness
    readiness.block("state", "downloading the inventory")
    code, body, _ = _get(api, "/health")
    assert code == 503
    answer = json.loads(body)
    assert answer["status"] == "unavailable"
    assert "downloading the inventory" in answer["error"]
    readiness.clear("state")
    code, body, _ = _get(api, "/health")
    assert code == 200
    assert json.loads(body)["status"] == "ok"
    assert json.loads(body)["role"] == role


@pytest.mark.parametrize("role", ROLES)
def test_metrics_are_prometheus_text(role: str, tmp_path) -> None:
    """/metrics answers the Prometheus text format."""
    api = _api(role, tmp_path)
    from prometheus_client import Counter

    Counter("stretchfs_test_things", "things", registry=api.metrics_registry).inc(3)
    code, body, headers = _get(api, "/metrics")
    assert code == 200
    assert headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
    assert b"stretchfs_test_things_total 3.0" in body


@pytest.mark.parametrize("role", ROLES)
def test_unknown_path_is_json_404(role: str, tmp_path) -> None:
    """An unknown path answers 404 with a JSON error body."""
    code, body, _ = _get(_api(role, tmp_path), "/no/such/thing")
    assert code == 404
    assert json.loads(body) == {"error": "not found"}


@pytest.mark.parametrize("role", ROLES)
def test_wrong_method_is_json_405(role: str, tmp_path) -> None:
    """A known path with the wrong method answers 405 with a JSON error body."""
    code, body, headers = _get(_api(role, tmp_path), "/metrics", "DELETE")
    assert code == 405
    assert "error" in json.loads(body)
