"""Unit tests of the broker URL parser (no broker needed)."""

import random

import pytest

from stompbox_client.url import credentials_from_env, parse

FULL = ("failover:(tcp://a:61613,tcp://b:61614)?randomize=false&initialReconnectDelay=10"
        "&maxReconnectDelay=30000&useExponentialBackOff=true&backOffMultiplier=2"
        "&maxReconnectAttempts=-1&startupMaxReconnectAttempts=3")


def test_failover_with_every_option():
    u = parse(FULL)
    assert u.failover
    assert u.hosts == (("a", 61613), ("b", 61614))
    assert not u.randomize
    assert u.initial_reconnect_delay_ms == 10
    assert u.max_reconnect_delay_ms == 30000
    assert u.use_exponential_back_off
    assert u.back_off_multiplier == 2.0
    assert u.max_reconnect_attempts == -1
    assert u.startup_max_reconnect_attempts == 3


def test_mapped_onto_stomp_py_parameters():
    u = parse(FULL)
    startup = u.stomp_params(startup=True)
    assert startup == {
        "host_and_ports": [("a", 61613), ("b", 61614)],
        "prefer_localhost": False,
        "try_loopback_connect": False,
        "reconnect_sleep_initial": 0.01,
        "reconnect_sleep_increase": 1.0,  # backOffMultiplier 2 = 100 % longer each pass
        "reconnect_sleep_max": 30.0,
        "reconnect_sleep_jitter": 0.0,
        # 3 passes after the first, stomp.py counting 2 failed addresses per pass
        "reconnect_attempts_max": 3 * 2 + 1,
    }
    assert u.stomp_params(startup=False)["reconnect_attempts_max"] == -1


def test_attempt_counts_and_no_backoff():
    u = parse("failover:(tcp://a:1,tcp://b:2,tcp://c:3)?maxReconnectAttempts=0"
              "&useExponentialBackOff=false&initialReconnectDelay=250")
    params = u.stomp_params(startup=True)
    # startupMaxReconnectAttempts unset: maxReconnectAttempts applies; 0 = one pass only
    assert params["reconnect_attempts_max"] == 1
    assert params["reconnect_sleep_increase"] == 0.0
    assert params["reconnect_sleep_initial"] == 0.25
    assert [u.delay(n) for n in (1, 2, 3)] == [0.25, 0.25, 0.25]


def test_delay_grows_to_the_cap():
    u = parse("failover:(tcp://a:1)?initialReconnectDelay=100&backOffMultiplier=3"
              "&maxReconnectDelay=1000")
    assert [u.delay(n) for n in (1, 2, 3, 4)] == [0.1, 0.3, 0.9, 1.0]


def test_defaults_are_activemqs():
    u = parse("failover:(tcp://a:61613)")
    assert u.randomize
    assert (u.initial_reconnect_delay_ms, u.max_reconnect_delay_ms) == (10, 30000)
    assert u.use_exponential_back_off and u.back_off_multiplier == 2.0
    assert (u.max_reconnect_attempts, u.startup_max_reconnect_attempts) == (-1, -1)


def test_randomize_shuffles_each_connect():
    u = parse("failover:(tcp://a:1,tcp://b:2,tcp://c:3,tcp://d:4)")
    orders = {tuple(u.host_and_ports(random.Random(seed))) for seed in range(20)}
    assert len(orders) > 1
    assert all(sorted(o) == sorted(u.hosts) for o in orders)
    fixed = parse("failover:(tcp://a:1,tcp://b:2)?randomize=false")
    assert fixed.host_and_ports() == [("a", 1), ("b", 2)]


@pytest.mark.parametrize("url, hosts", [
    ("tcp://127.0.0.1:61613", (("127.0.0.1", 61613),)),
    ("stomp://broker:61613", (("broker", 61613),)),
    ("localhost:61613", (("localhost", 61613),)),
    ("tcp://[::1]:61613", (("::1", 61613),)),
    ("failover:tcp://a:1,tcp://b:2?randomize=false", (("a", 1), ("b", 2))),
    ("FAILOVER:( tcp://a:1 , stomp://b:2 )?", (("a", 1), ("b", 2))),
])
def test_accepted_forms(url, hosts):
    assert parse(url).hosts == hosts


def test_plain_tcp_does_not_reconnect():
    u = parse("tcp://h:61613")
    assert not u.failover
    assert u.stomp_params(startup=True)["reconnect_attempts_max"] == 1
    assert u.stomp_params(startup=False)["reconnect_attempts_max"] == 1


@pytest.mark.parametrize("url, problem", [
    ("failover:(tcp://a:1)?maxReconectAttempts=3", "unknown option 'maxReconectAttempts'"),
    ("failover:(tcp://a:1)?timeout=3000", "unknown option 'timeout'"),
    ("failover:(tcp://a:1)?randomize=yes", "invalid value 'yes' for option randomize"),
    ("failover:(tcp://a:1)?randomize", "option 'randomize' has no value"),
    ("failover:(tcp://a:1)?maxReconnectAttempts=-2", "expected -1 or a count"),
    ("failover:(tcp://a:1)?backOffMultiplier=0.5", "expected a number >= 1"),
    ("failover:(tcp://a:1)?backOffMultiplier=nan", "expected a number >= 1"),
    ("failover:(tcp://a:1)?initialReconnectDelay=1.5", "expected milliseconds"),
    ("failover:()", "names no broker"),
    ("failover:(tcp://a:1", "unbalanced parentheses"),
    ("failover:(tcp://a:1)x", "unexpected 'x' after the closing parenthesis"),
    ("failover:(failover:(tcp://a:1))", "nested failover URL"),
    ("failover:(udp://a:1)", "unsupported scheme 'udp'"),
    ("http://h:1", "unsupported scheme 'http'"),
    ("tcp://h", "invalid address"),
    ("tcp://h:notaport", "invalid address"),
    ("tcp://h:70000", "invalid address"),
    ("tcp://:61613", "invalid address"),
    ("tcp://h:1?wireFormat.maxInactivityDuration=0", "unknown option 'wireFormat"),
    ("/queue/x", "unsupported broker URL"),
])
def test_malformed_urls_name_the_problem(url, problem):
    with pytest.raises(ValueError) as e:
        parse(url)
    assert problem in str(e.value)


def test_str_round_trips():
    for s in ("tcp://a:1", "failover:(tcp://a:1,tcp://b:2)", "failover:(tcp://[::1]:3)"):
        assert str(parse(s)) == s


def test_credentials_come_from_the_environment_and_default_to_anonymous():
    assert credentials_from_env({}) == {}
    assert credentials_from_env({"STOMP_LOGIN": "", "STOMP_PASSCODE": "x"}) == {}
    assert credentials_from_env({"STOMP_LOGIN": "app", "STOMP_PASSCODE": "s3"}) == {
        "login": "app", "passcode": "s3"}
    assert credentials_from_env({"STOMP_LOGIN": "app"}) == {"login": "app", "passcode": ""}
