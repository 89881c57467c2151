"""Every bad input gets an OpenAI-style error body with the right status, never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from gateway.fakes.server import ThreadedFakes
from tests.helpers import GatewayThread, make_settings


@pytest.fixture(scope="module")
def small(fakes: ThreadedFakes) -> Iterator[GatewayThread]:
    with GatewayThread(make_settings(fakes, server={"max_body_bytes": 4096})) as gw:
        yield gw


def check(r: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in err["message"]
    if code is not None:
        assert err["code"] == code
    if param is not None:
        assert err["param"] == param
    return err  # type: ignore[no-any-return]


def post(gw: GatewayThread, content: bytes | str, path: str = "/v1/chat/completions",
         headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(gw.url + path, content=content, timeout=10,
                      headers={"content-type": "application/json", **(headers or {})})


HI = '[{"role":"user","content":"hi"}]'


@pytest.mark.parametrize(("body", "code", "param"), [
    ('{"model": "auto", "messages": [', "invalid_json", None),
    ("", "invalid_json", None),
    ("[1, 2]", "invalid_json", None),
    ('{"model": "auto"}', "missing_required_parameter", "messages"),
    ('{"model": "auto", "messages": []}', "invalid_value", "messages"),
    ('{"model": "auto", "messages": "hello"}', "invalid_value", "messages"),
    ('{"model": "auto", "messages": [{"role": "wizard", "content": "hi"}]}', "invalid_value", "messages[0].role"),
    ('{"model": "auto", "messages": [{"content": "hi"}]}', "missing_required_parameter", "messages[0]"),
    (f'{{"model": 5, "messages": {HI}}}', "invalid_value", "model"),
    (f'{{"messages": {HI}, "temperature": "hot"}}', "invalid_value", "temperature"),
    (f'{{"messages": {HI}, "stream": "yes"}}', "invalid_value", "stream"),
    (f'{{"messages": {HI}, "max_tokens": 1.5}}', "invalid_value", "max_tokens"),
    ('{"messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]}', "invalid_value", None),
])
def test_schema_errors_are_400(gateway: GatewayThread, body: str, code: str, param: str | None) -> None:
    check(post(gateway, body), 400, code, param)


def test_unknown_model_is_404(gateway: GatewayThread) -> None:
    err = check(post(gateway, f'{{"model": "gpt-9", "messages": {HI}}}'), 404, "model_not_found", "model")
    assert "gpt-9" in str(err["message"])


def test_n_greater_than_one_is_rejected(gateway: GatewayThread) -> None:
    check(post(gateway, f'{{"model": "auto", "n": 3, "messages": {HI}}}'), 400, "unsupported_value", "n")


def test_bad_force_tier_header(gateway: GatewayThread) -> None:
    check(post(gateway, f'{{"messages": {HI}}}', headers={"X-SMR-Force-Tier": "huge"}), 400, "invalid_value")


def test_body_over_limit_is_413(small: GatewayThread) -> None:
    big = '{"messages": [{"role": "user", "content": "' + "x" * 10_000 + '"}]}'
    check(post(small, big), 413, "request_too_large")
    # A body under the limit still works on the same server.
    assert post(small, f'{{"model": "smr/simple", "messages": {HI}}}').status_code == 200


def test_unknown_route_and_method(gateway: GatewayThread) -> None:
    check(httpx.get(gateway.url + "/v1/nothing-here"), 404, "not_found")
    check(httpx.get(gateway.url + "/v1/chat/completions"), 405, "method_not_allowed")


@pytest.mark.parametrize(("body", "status"), [
    ("{}", 400), ('{"prompt": ""}', 400), ('{"prompt": 3}', 400), ("nope", 400),
    ('{"prompt": "hi", "force_tier": "mega"}', 400), ('{"prompt": "hi", "surprise": 1}', 400),
])
def test_complete_endpoint_errors(gateway: GatewayThread, body: str, status: int) -> None:
    check(post(gateway, body, "/v1/complete"), status)


def test_sdk_raises_typed_errors(gateway: GatewayThread) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="auto", messages=[])


DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize(("body", "param"), [
    (f'{{"messages": {HI}, "temperature": -5}}', "temperature"),
    (f'{{"messages": {HI}, "temperature": 99}}', "temperature"),
    (f'{{"messages": {HI}, "max_tokens": -1}}', "max_tokens"),
    (f'{{"messages": {HI}, "max_completion_tokens": 0}}', "max_completion_tokens"),
    (f'{{"messages": {HI}, "n": 0}}', "n"),
    (f'{{"messages": {HI}, "top_p": 1.5}}', "top_p"),
    (f'{{"messages": {HI}, "presence_penalty": 3}}', "presence_penalty"),
    (f'{{"messages": {HI}, "model": "{"m" * 1_000}"}}', "model"),
])
def test_values_the_openai_api_refuses_are_400(gateway: GatewayThread, body: str, param: str) -> None:
    """Issue 13, defect 10: these were accepted (the OpenAI API answers 400)."""
    check(post(gateway, body), 400, "invalid_value", param)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/complete"])
def test_deeply_nested_json_is_400_not_500(gateway: GatewayThread, path: str) -> None:
    """Issue 13, defect 5: 5,000 levels of nesting raised RecursionError -> 500."""
    chat = path.endswith("completions")
    check(post(gateway, f'{{"messages": {DEEP}}}' if chat else f'{{"prompt": "hi", "surprise": {DEEP}}}', path),
          400, "invalid_json" if chat else None)


ADMIN = "admin-bad-input"


@pytest.fixture(scope="module")
def keyed(fakes: ThreadedFakes, pg_url: str) -> Iterator[GatewayThread]:
    with GatewayThread(make_settings(fakes, db_url=pg_url, auth={"enabled": True, "admin_key": ADMIN})) as gw:
        yield gw


@pytest.mark.parametrize(("body", "param"), [
    ({"name": "a", "tenant": "t", "expires_in_s": 1e300}, "expires_in_s"),
    ({"name": "a", "tenant": "t", "expires_in_s": -1e300}, "expires_in_s"),
    ({"name": "a", "tenant": "t", "rate_limit_rpm": 10**12}, "rate_limit_rpm"),
    ({"name": "a", "tenant": "t", "budget_usd": -1}, "budget_usd"),
    ({"name": "a", "tenant": "t\x00x"}, "tenant"),
    ({"name": "a" * 500, "tenant": "t"}, "name"),
])
def test_key_fields_out_of_range_are_400_not_500(keyed: GatewayThread, body: dict[str, object], param: str) -> None:
    r = httpx.post(keyed.url + "/v1/keys", json=body, headers={"Authorization": f"Bearer {ADMIN}"})
    err = check(r, 400, "invalid_value")
    assert param in str(err["message"])


def test_key_endpoints_survive_deep_json_and_huge_grace(keyed: GatewayThread) -> None:
    h = {"Authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
    check(httpx.post(keyed.url + "/v1/keys", content=DEEP, headers=h), 400, "invalid_json")
    made = httpx.post(keyed.url + "/v1/keys", json={"name": "a", "tenant": "t"}, headers=h).json()
    r = httpx.post(keyed.url + f"/v1/keys/{made['id']}/rotate", json={"grace_s": 1e300}, headers=h)
    check(r, 400, "invalid_value")
    check(httpx.get(keyed.url + "/v1/keys", params={"tenant": "a\x00b"}, headers=h), 400, "invalid_value", "tenant")


def _raw(gw: GatewayThread, request: bytes) -> tuple[int, str, bytes]:
    import socket

    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    ctype = next((h.split(":", 1)[1].strip() for h in lines[1:] if h.lower().startswith("content-type:")), "")
    return int(lines[0].split()[1]), ctype, body


@pytest.mark.parametrize("request_bytes", [
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\nhost: x\r\n\r\n",
    b"NOT-HTTP\r\n\r\n",
])
def test_requests_the_http_parser_refuses_get_the_openai_error_shape(gateway: GatewayThread,
                                                                     request_bytes: bytes) -> None:
    """Issue 13, defect 5: these came back as uvicorn's plain text."""
    import json

    status, ctype, body = _raw(gateway, request_bytes)
    assert status == 400 and ctype == "application/json"
    err = json.loads(body)["error"]
    assert err["code"] == "invalid_http_request" and err["type"] == "invalid_request_error"
