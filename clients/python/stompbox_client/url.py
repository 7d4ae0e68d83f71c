"""Broker URLs as ActiveMQ clients write them, mapped onto stomp.py's connection settings.

    tcp://host:61613            one broker (also stomp://host:61613 or a bare host:61613)
    failover:(tcp://a:61613,tcp://b:61613)?randomize=false&maxReconnectAttempts=-1

The option names, meanings and defaults are ActiveMQ's failover transport's, the same ones
`stompbox produce|consume|bench` accept (src/client/uri.rs). As there, an option that is not
understood is an error rather than ignored: a typo such as `maxReconectAttempts` would
otherwise change how the client behaves in an outage, silently.
"""

import dataclasses
import math
import random

# Every failover option with its default (ActiveMQ's FailoverTransport defaults).
DEFAULTS = {
    "randomize": True,
    "initialReconnectDelay": 10,  # ms
    "maxReconnectDelay": 30000,  # ms
    "useExponentialBackOff": True,
    "backOffMultiplier": 2.0,
    "maxReconnectAttempts": -1,  # -1 = forever, 0 = never reconnect
    "startupMaxReconnectAttempts": -1,  # -1 = use maxReconnectAttempts
}


@dataclasses.dataclass(frozen=True)
class BrokerUrl:
    """A parsed broker URL: the addresses in the order written, and the failover options.

    A plain `tcp://` URL gets `failover=False` and `maxReconnectAttempts=0`: one pass over its
    one address, and no reconnect when the connection drops (as ActiveMQ's plain transport).
    """

    hosts: tuple  # ((host, port), ...)
    failover: bool
    randomize: bool = DEFAULTS["randomize"]
    initial_reconnect_delay_ms: int = DEFAULTS["initialReconnectDelay"]
    max_reconnect_delay_ms: int = DEFAULTS["maxReconnectDelay"]
    use_exponential_back_off: bool = DEFAULTS["useExponentialBackOff"]
    back_off_multiplier: float = DEFAULTS["backOffMultiplier"]
    max_reconnect_attempts: int = DEFAULTS["maxReconnectAttempts"]
    startup_max_reconnect_attempts: int = DEFAULTS["startupMaxReconnectAttempts"]

    def attempts(self, startup):
        """Reconnect passes allowed after the first failed one (-1 = forever): the startup
        limit for the very first connect when it is set, else maxReconnectAttempts."""
        if startup and self.startup_max_reconnect_attempts != -1:
            return self.startup_max_reconnect_attempts
        return self.max_reconnect_attempts

    def host_and_ports(self, rng=random):
        """The address list for one connect: shuffled when `randomize` (ActiveMQ shuffles
        before every reconnect, so clients of a failed broker spread over the others)."""
        hosts = list(self.hosts)
        if self.randomize:
            rng.shuffle(hosts)
        return hosts

    def stomp_params(self, startup, rng=random):
        """Keyword arguments for `stomp.Connection12(...)` that reproduce this URL's policy.

        stomp.py tries every address once per pass, and after a failed pass sleeps
        `min(reconnect_sleep_max, reconnect_sleep_initial * (1 + reconnect_sleep_increase)**k)`
        for the k-th failed pass (k = 0, 1, ...): with `increase = backOffMultiplier - 1` that
        is ActiveMQ's initialReconnectDelay × backOffMultiplier^k, capped by maxReconnectDelay.
        stomp.py counts failed *addresses*, not passes, and checks the count between passes,
        so N reconnect passes after the first (N+1 passes in all) is
        `reconnect_attempts_max = N × len(hosts) + 1`.

        prefer_localhost and try_loopback_connect are off: they would reorder the list (local
        names first) or add 127.0.0.1 entries, and the URL's order is what randomize=false
        promises. No jitter: ActiveMQ has none; randomize spreads clients instead.
        """
        attempts = self.attempts(startup)
        if attempts == -1:
            attempts_max = -1
        else:
            attempts_max = attempts * len(self.hosts) + 1
        increase = self.back_off_multiplier - 1.0 if self.use_exponential_back_off else 0.0
        return {
            "host_and_ports": self.host_and_ports(rng),
            "prefer_localhost": False,
            "try_loopback_connect": False,
            "reconnect_sleep_initial": self.initial_reconnect_delay_ms / 1000.0,
            "reconnect_sleep_increase": increase,
            "reconnect_sleep_max": self.max_reconnect_delay_ms / 1000.0,
            "reconnect_sleep_jitter": 0.0,
            "reconnect_attempts_max": attempts_max,
        }

    def delay(self, failures):
        """The pause (seconds) after `failures` consecutive failed passes (1, 2, ...), as
        stomp.py computes it from stomp_params(); used for failures stomp.py does not see
        (the broker answered the CONNECT with an ERROR, or never answered)."""
        d = self.initial_reconnect_delay_ms
        if self.use_exponential_back_off:
            d *= self.back_off_multiplier ** max(failures - 1, 0)
        return min(d, self.max_reconnect_delay_ms) / 1000.0

    def __str__(self):
        addrs = ",".join(f"tcp://{_join(h, p)}" for h, p in self.hosts)
        return f"failover:({addrs})" if self.failover else addrs


def parse(url):
    """Parse a broker URL into a BrokerUrl; a malformed URL or an unknown option raises
    ValueError naming the problem."""
    if not isinstance(url, str):
        raise ValueError(f"broker URL must be a string, not {type(url).__name__}")
    s = url.strip()
    if s[:9].lower() == "failover:":
        return _parse_failover(s, s[9:])
    return BrokerUrl(hosts=(_parse_tcp(s),), failover=False, randomize=False,
                     max_reconnect_attempts=0, startup_max_reconnect_attempts=0)


def _parse_failover(whole, rest):
    if rest.startswith("("):
        close = rest.rfind(")")
        if close < 0:
            raise ValueError(f"unbalanced parentheses in {whole!r}")
        after = rest[close + 1:]
        if after and not after.startswith("?"):
            raise ValueError(f"unexpected {after!r} after the closing parenthesis in {whole!r} "
                             "(expected ?option=value&...)")
        listed, query = rest[1:close], after[1:]
    else:
        listed, _, query = rest.partition("?")
    if "(" in listed or ")" in listed:
        if "failover:" in listed.lower():
            raise ValueError(f"nested failover URL in {whole!r}")
        raise ValueError(f"unbalanced parentheses in {whole!r}")
    hosts = []
    for part in (p.strip() for p in listed.split(",")):
        if not part:
            continue
        if part[:9].lower() == "failover:":
            raise ValueError(f"nested failover URL in {whole!r}")
        hosts.append(_parse_tcp(part))
    if not hosts:
        raise ValueError(f"failover URL {whole!r} names no broker")
    options = {}
    for pair in (p for p in query.split("&") if p):
        key, eq, value = pair.partition("=")
        if key not in DEFAULTS:
            known = ", ".join(DEFAULTS)
            raise ValueError(f"unknown option {key!r} in {whole!r} (known: {known})")
        if not eq:
            raise ValueError(f"option {key!r} has no value in {whole!r}")
        options[key] = _option_value(key, value)
    return BrokerUrl(
        hosts=tuple(hosts),
        failover=True,
        randomize=options.get("randomize", DEFAULTS["randomize"]),
        initial_reconnect_delay_ms=options.get("initialReconnectDelay",
                                               DEFAULTS["initialReconnectDelay"]),
        max_reconnect_delay_ms=options.get("maxReconnectDelay", DEFAULTS["maxReconnectDelay"]),
        use_exponential_back_off=options.get("useExponentialBackOff",
                                             DEFAULTS["useExponentialBackOff"]),
        back_off_multiplier=options.get("backOffMultiplier", DEFAULTS["backOffMultiplier"]),
        max_reconnect_attempts=options.get("maxReconnectAttempts",
                                           DEFAULTS["maxReconnectAttempts"]),
        startup_max_reconnect_attempts=options.get("startupMaxReconnectAttempts",
                                                   DEFAULTS["startupMaxReconnectAttempts"]),
    )


def _option_value(key, value):
    default = DEFAULTS[key]
    if isinstance(default, bool):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"invalid value {value!r} for option {key} (expected true or false)")
    if key == "backOffMultiplier":
        try:
            m = float(value)
        except ValueError:
            m = None
        if m is None or not math.isfinite(m) or m < 1.0:
            raise ValueError(f"invalid value {value!r} for option {key} (expected a number >= 1)")
        return m
    if key.endswith("ReconnectAttempts"):
        if not _is_int(value) or int(value) < -1:
            raise ValueError(f"invalid value {value!r} for option {key} (expected -1 or a count)")
        return int(value)
    if not value.isdigit():
        raise ValueError(f"invalid value {value!r} for option {key} (expected milliseconds)")
    return int(value)


def _is_int(value):
    return value.lstrip("-").isdigit() and value.count("-") <= 1 and not value.endswith("-")


def _parse_tcp(s):
    """`tcp://host:port`, `stomp://host:port` or a bare `host:port` into (host, port)."""
    scheme, sep, rest = s.partition("://")
    if sep:
        if scheme.lower() not in ("tcp", "stomp"):
            raise ValueError(f"unsupported scheme {scheme!r} in {s!r} "
                             "(expected tcp://host:port, stomp://host:port or failover:(...))")
    elif ":" in s and "/" not in s:
        rest = s
    else:
        raise ValueError(f"unsupported broker URL {s!r} "
                         "(expected tcp://host:port, stomp://host:port or failover:(...))")
    addr, _, query = rest.partition("?")
    if query:
        key = query.split("&")[0].split("=")[0]
        raise ValueError(f"unknown option {key!r} in {s!r} (a single tcp:// address takes no "
                         "options; put failover options on a failover:(...) URL)")
    addr = addr.rstrip("/")
    host, colon, port = addr.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid address in {s!r} (expected host:port with a port 1-65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [::1] -> ::1, as socket.create_connection wants it
    return host, int(port)


def _join(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def from_env(environ=None):
    """The broker URL the examples and tests use: STOMP_URL if set, else
    `failover:(tcp://STOMP_HOST:STOMP_PORT)` (defaults 127.0.0.1 and 61613, where `make run`
    listens)."""
    import os

    env = os.environ if environ is None else environ
    if env.get("STOMP_URL"):
        return env["STOMP_URL"]
    host = env.get("STOMP_HOST", "127.0.0.1")
    port = env.get("STOMP_PORT", "61613")
    return f"failover:(tcp://{_join(host, port)})"


def credentials_from_env(environ=None):
    """The login and passcode the examples and tests use, as Client keyword arguments:
    `{"login": STOMP_LOGIN, "passcode": STOMP_PASSCODE}`, or `{}` (anonymous, which the
    loopback broker of `make run` allows) when STOMP_LOGIN is unset or empty. A passcode
    belongs in the environment or a secret store, never in source."""
    import os

    env = os.environ if environ is None else environ
    if not env.get("STOMP_LOGIN"):
        return {}
    return {"login": env["STOMP_LOGIN"], "passcode": env.get("STOMP_PASSCODE", "")}
