"""THE failover test: kill -9 the master of a pair in the middle of a stream of persistent,
receipted SENDs, and check that every message whose send returned survives on the standby.

At-least-once means duplicates are allowed: a SEND the old master stored but whose RECEIPT
never reached us is written again to the new master. Each such copy must say so
(stompbox-resent:true) and carry the same stompbox-client-msg-id, which is how a consumer
drops it. The figures are printed (pytest -s shows them).
"""

import collections
import os
import queue
import signal
import threading
import time
import uuid

from conftest import pair_auth
from stompbox_client import Client

COUNT = 2000
KILL_AFTER = 500  # receipted messages before the master is killed
WINDOW = 50  # SENDs in flight at once
TIMEOUT = 60  # seconds any one wait may take before the test fails


def test_kill9_of_the_master_loses_no_receipted_message(pair):
    a = f"tcp://127.0.0.1:{pair['A_PORT']}"
    b = f"tcp://127.0.0.1:{pair['B_PORT']}"
    url = (f"failover:({a},{b})?randomize=false&initialReconnectDelay=10"
           "&maxReconnectDelay=1000&useExponentialBackOff=true&backOffMultiplier=2"
           "&maxReconnectAttempts=-1&startupMaxReconnectAttempts=0")
    destination = f"/queue/py-failover-{uuid.uuid4().hex[:10]}"
    watched = f"/queue/py-failover-watched-{uuid.uuid4().hex[:10]}"

    auth = pair_auth(pair)
    producer = Client(url, **auth, receipt_timeout=TIMEOUT)
    # A subscriber that lives through the fail-over: its subscription must follow it to b.
    watcher_inbox = queue.Queue()
    watcher = Client(url, **auth, receipt_timeout=TIMEOUT)
    watcher.subscribe(watched, watcher_inbox.put, ack="client-individual", id="watch")

    receipted = []  # msg ids whose send() returned
    failures = []
    progress = threading.Condition()

    def stream():
        in_flight = collections.deque()

        def settle():
            seq, handle = in_flight.popleft()
            try:
                handle.wait()
            except Exception as e:
                failures.append((seq, repr(e)))
                return
            with progress:
                receipted.append(handle.msg_id)
                progress.notify_all()

        try:
            for seq in range(COUNT):
                in_flight.append((seq, producer.send_async(
                    destination, f"message {seq}", headers={"persistent": "true",
                                                             "seq": str(seq)})))
                if len(in_flight) >= WINDOW:
                    settle()
            while in_flight:
                settle()
        except Exception as e:
            failures.append(("stream", repr(e)))
        finally:
            with progress:
                progress.notify_all()

    sender = threading.Thread(target=stream, name="stream")
    try:
        assert producer.broker == ("127.0.0.1", int(pair["A_PORT"]))
        sender.start()
        with progress:
            assert progress.wait_for(
                lambda: len(receipted) >= KILL_AFTER or not sender.is_alive(), TIMEOUT)
            assert len(receipted) < COUNT, "the stream ended before the kill; raise COUNT"
            receipted_at_kill = len(receipted)
        os.kill(int(pair["A_PID"]), signal.SIGKILL)
        sender.join(TIMEOUT * 2)
        assert not sender.is_alive(), "the stream did not finish after the fail-over"
        assert failures == [], f"sends that failed: {failures[:5]}"
        assert len(receipted) == COUNT
        assert producer.broker == ("127.0.0.1", int(pair["B_PORT"]))

        # The watcher was resubscribed on b under the same id.
        producer.send(watched, "after the fail-over")
        seen = watcher_inbox.get(timeout=TIMEOUT)
        assert (seen.body, seen.subscription.id) == ("after the fail-over", "watch")
        assert seen.ack()

        producer.send(destination, "sentinel", headers={"persistent": "true"})
        resends = producer.resends
    finally:
        producer.close()
        watcher.close()

    # Everything is on b now; read it all back through b alone.
    inbox = queue.Queue()
    copies = collections.defaultdict(list)  # msg id -> [resent?, ...]
    with Client(b, **auth, receipt_timeout=TIMEOUT) as consumer:
        consumer.subscribe(destination, inbox.put, ack="client-individual", prefetch=500)
        while True:
            message = inbox.get(timeout=TIMEOUT)
            message.ack()
            if message.body == "sentinel":
                break
            copies[message.msg_id].append(message.resent)

    lost = [m for m in receipted if m not in copies]
    duplicates = {m: flags for m, flags in copies.items() if len(flags) > 1}
    unmarked = {m: flags for m, flags in duplicates.items() if flags.count(True) < len(flags) - 1}
    print(f"\nfailover: {COUNT} sent, {len(receipted)} receipted ({receipted_at_kill} before "
          f"the kill), {sum(map(len, copies.values()))} received ({len(copies)} distinct), "
          f"{sum(len(f) - 1 for f in duplicates.values())} duplicate(s), {resends} resent")
    assert lost == [], f"{len(lost)} receipted message(s) lost, e.g. {lost[:3]}"
    assert unmarked == {}, f"duplicates without stompbox-resent:true: {unmarked}"
    assert set(copies) <= set(receipted), "received a message nobody sent"
