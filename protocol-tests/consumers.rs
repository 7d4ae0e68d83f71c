//! ActiveMQ's consumer options on SUBSCRIBE: `activemq.exclusive`, `activemq.priority`,
//! `activemq.noLocal`, and message groups (`JMSXGroupID`, `JMSXGroupSeq`).

use std::collections::{BTreeMap, BTreeSet};

use crate::support::{bodies, queue, topic, Broker, QUIET, WAIT};

#[test]
fn an_exclusive_consumer_gets_everything_and_another_takes_over_when_it_leaves() {
    let broker = Broker::under_test();
    let q = queue("exclusive");
    let mut plain = broker.connect("1.2");
    plain.subscribe(&q, "p", "auto", &[]);
    let mut first = broker.connect("1.2");
    first.subscribe(
        &q,
        "x",
        "client-individual",
        &[("activemq.exclusive", "true")],
    );
    let mut second = broker.connect("1.2");
    second.subscribe(
        &q,
        "x2",
        "client-individual",
        &[("activemq.exclusive", "true")],
    );
    let mut producer = broker.connect("1.2");
    for n in 0..6 {
        producer.send(&q, &n.to_string(), &[]);
    }
    let got = first.receive(6, WAIT);
    assert_eq!(bodies(&got), ["0", "1", "2", "3", "4", "5"]);
    plain.expect_silence(QUIET);
    second.expect_silence(QUIET);
    // The first acks two and leaves: the rest go to the next exclusive consumer, redelivered.
    first.ack(&got[0]);
    first.ack(&got[1]);
    first.disconnect();
    let rest = second.receive(4, WAIT);
    assert_eq!(bodies(&rest), ["2", "3", "4", "5"]);
    assert!(
        rest.iter().all(|m| m.get("redelivered") == Some("true")),
        "{rest:?}"
    );
    plain.expect_silence(QUIET);
}

#[test]
fn higher_priority_consumers_are_served_first_lower_ones_only_when_they_are_full() {
    let broker = Broker::under_test();
    let q = queue("consumer-priority");
    let mut low = broker.connect("1.2");
    low.subscribe(
        &q,
        "low",
        "client-individual",
        &[("activemq.priority", "1")],
    );
    let mut high = broker.connect("1.2");
    high.subscribe(
        &q,
        "high",
        "client-individual",
        &[("activemq.priority", "9"), ("activemq.prefetchSize", "3")],
    );
    let mut producer = broker.connect("1.2");
    for n in 0..5 {
        producer.send(&q, &n.to_string(), &[]);
    }
    // The high-priority consumer takes what its prefetch allows; the rest spill to the low one.
    assert_eq!(bodies(&high.receive(3, WAIT)), ["0", "1", "2"]);
    assert_eq!(bodies(&low.receive(2, WAIT)), ["3", "4"]);
    high.expect_silence(QUIET);
}

#[test]
fn a_message_group_sticks_to_one_consumer_and_groups_spread_over_consumers() {
    let broker = Broker::under_test();
    let q = queue("groups");
    let mut consumers: Vec<_> = (0..2)
        .map(|i| {
            let mut c = broker.connect("1.2");
            c.subscribe(&q, &format!("c{i}"), "auto", &[]);
            c
        })
        .collect();
    let mut producer = broker.connect("1.2");
    for n in 0..40 {
        let group = format!("g{}", n % 4);
        producer.send(&q, &format!("{group}-{n}"), &[("JMSXGroupID", &group)]);
    }
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_consumer = [0usize; 2];
    for (i, c) in consumers.iter_mut().enumerate() {
        for m in c.receive_until_quiet(QUIET, WAIT) {
            // The body names the group: ActiveMQ does not pass JMSXGroupID on to MESSAGE.
            let text = m.text();
            let group = text.split('-').next().unwrap_or_default().to_string();
            let was = owner.insert(group.clone(), i);
            assert!(was.is_none_or(|w| w == i), "{group} went to two consumers");
            per_consumer[i] += 1;
        }
    }
    assert_eq!(owner.len(), 4, "{owner:?}");
    assert_eq!(per_consumer, [20, 20], "4 groups spread 2 and 2: {owner:?}");
}

#[test]
fn a_group_closed_by_seq_minus_one_is_pinned_again_and_a_leaving_owner_releases_it() {
    let broker = Broker::under_test();
    let q = queue("group-close");
    let mut a = broker.connect("1.2");
    a.subscribe(&q, "a", "client-individual", &[]);
    let mut producer = broker.connect("1.2");
    producer.send_sync(&q, "1", &[("JMSXGroupID", "g")]);
    let first = a.expect_body("1");
    let mut b = broker.connect("1.2");
    b.subscribe(&q, "b", "client-individual", &[]);
    // Still pinned to a, although b is idle.
    producer.send_sync(&q, "2", &[("JMSXGroupID", "g"), ("JMSXGroupSeq", "-1")]);
    let second = a.expect_body("2");
    b.expect_silence(QUIET);
    a.ack(&first);
    a.ack(&second);
    // Closed: the next message of g pins it afresh, to whichever consumer, and the one after
    // follows it there.
    producer.send_sync(&q, "3", &[("JMSXGroupID", "g")]);
    producer.send_sync(&q, "4", &[("JMSXGroupID", "g")]);
    let a_got_it = match a.next_frame(QUIET) {
        Some(m) => {
            assert_eq!(m.text(), "3");
            true
        }
        None => false,
    };
    let (mut holder, mut other) = if a_got_it {
        (a, b)
    } else {
        b.expect_body("3");
        (b, a)
    };
    holder.expect_body("4");
    other.expect_silence(QUIET);
    // Its owner leaves without acking: the group moves to the other consumer, with what it
    // held redelivered first.
    drop(holder);
    producer.send_sync(&q, "5", &[("JMSXGroupID", "g")]);
    assert_eq!(bodies(&other.receive(3, WAIT)), ["3", "4", "5"]);
}

#[test]
fn no_local_subscribers_do_not_get_their_own_connections_messages() {
    let broker = Broker::under_test();
    let t = topic("no-local");
    let mut both = broker.connect("1.2");
    both.subscribe(&t, "mine", "auto", &[("activemq.noLocal", "true")]);
    let mut other = broker.connect("1.2");
    other.subscribe(&t, "all", "auto", &[]);
    both.send_sync(&t, "from-both", &[]);
    other.send_sync(&t, "from-other", &[]);
    both.expect_body("from-other");
    both.expect_silence(QUIET);
    let got: BTreeSet<String> = bodies(&other.receive(2, WAIT)).into_iter().collect();
    assert_eq!(
        got,
        BTreeSet::from(["from-both".to_string(), "from-other".to_string()])
    );
}
