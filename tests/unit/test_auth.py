"""API keys, scopes and the token bucket (``nextbest.serving.auth``), with known answers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from nextbest.serving.auth import (
    ApiKey,
    ApiKeyConfigError,
    KeyRing,
    TokenBuckets,
    UnauthenticatedStartError,
    add_key,
    check_can_start,
    key_digest,
    load_keyring,
    parse_keys,
    presented_key,
    required_scope,
    retry_after_header,
)
from nextbest.settings import ServingSettings, Settings


def entry(key_id: str, secret: str, scopes: list[str]) -> dict:
    return {"id": key_id, "sha256": hashlib.sha256(secret.encode()).hexdigest(), "scopes": scopes}


class TestKeys:
    def test_a_key_is_identified_by_its_hash_and_nothing_else(self) -> None:
        ring = KeyRing(parse_keys(json.dumps({"keys": [entry("a", "s3cret", ["rank"])]}), "env"))
        assert ring.identify("s3cret").key_id == "a"
        assert ring.identify("s3cret ") is None and ring.identify("") is None
        assert key_digest("s3cret").hex() == hashlib.sha256(b"s3cret").hexdigest()

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            ([{"id": "a", "sha256": "00", "scopes": ["rank"]}], "64 lowercase hex"),
            ([entry("a", "x", ["rank", "root"])], "scopes must be"),
            ([entry("a", "x", [])], "scopes must be"),
            ([entry("bad id", "x", ["rank"])], "id 'bad id'"),
            ([entry("a", "x", ["rank"]), entry("a", "y", ["batch"])], "appears twice"),
            ([{**entry("a", "x", ["rank"]), "burst": 0}], "burst"),
            ("keys: 3", "expected a list"),
        ],
    )
    def test_invalid_keys_are_one_line_errors_naming_the_entry(self, raw: object, message: str) -> None:
        text = raw if isinstance(raw, str) else yaml.safe_dump({"keys": raw})
        with pytest.raises(ApiKeyConfigError, match=message) as err:
            parse_keys(text, "keys.yaml")
        assert "keys.yaml" in str(err.value) and "\n" not in str(err.value)

    def test_add_key_prints_once_stores_only_the_hash_and_refuses_a_second_id(self, tmp_path: Path) -> None:
        path = tmp_path / "k" / "keys.yaml"
        key = add_key(path, "crm", ["rank", "batch"])
        text = path.read_text()
        assert key not in text and key_digest(key).hex() in text
        assert path.stat().st_mode & 0o777 == 0o600
        other = add_key(path, "ops", ["admin"], rate_per_s=5)
        ring = KeyRing(parse_keys(path.read_text(), str(path)))
        assert ring.identify(key).scopes == {"rank", "batch"}
        assert ring.identify(other).rate_per_s == 5
        with pytest.raises(ApiKeyConfigError, match="exists already"):
            add_key(path, "crm", ["rank"])

    def test_the_file_and_the_environment_are_both_read(self, tmp_path: Path) -> None:
        settings = Settings(home=tmp_path)
        add_key(tmp_path / "api_keys.yaml", "file-key", ["rank"])
        env = json.dumps([entry("env-key", "e", ["batch"])])
        ring = load_keyring(settings, ServingSettings(api_keys=env))
        assert [k.key_id for k in ring.keys] == ["file-key", "env-key"]
        assert not load_keyring(Settings(home=tmp_path / "none"), ServingSettings())
        with pytest.raises(ApiKeyConfigError, match="does not exist"):
            load_keyring(settings, ServingSettings(api_keys_file=tmp_path / "missing.yaml"))

    def test_the_key_is_read_from_a_bearer_or_an_x_api_key_header(self) -> None:
        assert presented_key([(b"authorization", b"Bearer abc")]) == "abc"
        assert presented_key([(b"authorization", b"bearer  abc ")]) == "abc"
        assert presented_key([(b"x-api-key", b"xyz")]) == "xyz"
        assert presented_key([(b"authorization", b"Basic abc")]) is None
        assert presented_key([]) is None


class TestScopesAndStart:
    @pytest.mark.parametrize(
        ("path", "scope"),
        [
            ("/rank", "rank"),
            ("/rank/batch", "batch"),
            ("/score/churn", "score"),
            ("/metrics", "admin"),
            ("/ready", None),
            ("/docs", None),
        ],
    )
    def test_each_route_has_its_scope(self, path: str, scope: str | None) -> None:
        assert required_scope(path) == scope

    def test_a_public_interface_needs_a_key_or_the_override(self) -> None:
        empty, one = KeyRing([]), KeyRing([ApiKey("a", b"x" * 32, frozenset({"rank"}))])
        check_can_start("127.0.0.1", empty, False)
        check_can_start("0.0.0.0", one, False)
        check_can_start("0.0.0.0", empty, True)
        with pytest.raises(UnauthenticatedStartError, match="refusing to serve 0.0.0.0"):
            check_can_start("0.0.0.0", empty, False)


class TestTokenBuckets:
    def test_burst_then_rate_with_the_wait_until_the_next_token(self) -> None:
        now = [0.0]
        buckets = TokenBuckets(rate_per_s=2.0, burst=3, clock=lambda: now[0])
        key = ApiKey("a", b"x" * 32, frozenset({"rank"}))
        assert [buckets.take(key) for _ in range(3)] == [0.0, 0.0, 0.0]
        assert buckets.take(key) == pytest.approx(0.5)
        now[0] = 0.5  # one token back
        assert buckets.take(key) == 0.0 and buckets.take(key) == pytest.approx(0.5)
        now[0] = 100.0  # refilled to the burst, not beyond
        assert [buckets.take(key) for _ in range(4)][-1] > 0
        assert retry_after_header(0.5) == "1" and retry_after_header(2.1) == "3"

    def test_keys_have_their_own_bucket_and_rate(self) -> None:
        buckets = TokenBuckets(rate_per_s=1.0, burst=1, clock=lambda: 0.0)
        slow, free = ApiKey("s", b"x" * 32, frozenset()), ApiKey("f", b"y" * 32, frozenset(), rate_per_s=0)
        assert buckets.take(slow) == 0.0 and buckets.take(slow) > 0
        assert all(buckets.take(free) == 0.0 for _ in range(100))
