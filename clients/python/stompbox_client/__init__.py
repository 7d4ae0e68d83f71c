"""stompbox-client: a small failover-aware STOMP client for stompbox, on top of stomp.py.

    from stompbox_client import Client, Pool

    with Client("failover:(tcp://a:61613,tcp://b:61613)?randomize=false",
                login="app", passcode=os.environ["STOMP_PASSCODE"]) as client:
        client.send("/queue/orders", "hello", headers={"persistent": "true"})

See clients/python/README.md for the failover URL options, pooling and the delivery
guarantees (at-least-once SENDs, `stompbox-resent` and `stompbox-client-msg-id`).
"""

from .client import (
    DEFAULT_URL,
    MSG_ID_HEADER,
    RESENT_HEADER,
    AuthenticationFailed,
    BrokerError,
    Client,
    ConnectionLost,
    Message,
    Receipt,
    ReceiptTimeout,
    StompboxError,
    Subscription,
    Transaction,
    TransactionLost,
)
from .pool import Pool
from .url import BrokerUrl, credentials_from_env, parse as parse_url

__all__ = [
    "DEFAULT_URL",
    "MSG_ID_HEADER",
    "RESENT_HEADER",
    "AuthenticationFailed",
    "BrokerError",
    "BrokerUrl",
    "Client",
    "ConnectionLost",
    "Message",
    "Pool",
    "Receipt",
    "ReceiptTimeout",
    "StompboxError",
    "Subscription",
    "Transaction",
    "TransactionLost",
    "credentials_from_env",
    "parse_url",
]
