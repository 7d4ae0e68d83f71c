use super::*;

/// A message as a selector sees it.
struct M {
    headers: Vec<(&'static str, &'static str)>,
    priority: u8,
    id: u64,
    expires: u64,
    persistent: bool,
}

impl Subject for M {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }
    fn priority(&self) -> u8 {
        self.priority
    }
    fn message_id(&self) -> u64 {
        self.id
    }
    fn expires(&self) -> u64 {
        self.expires
    }
    fn persistent(&self) -> bool {
        self.persistent
    }
}

fn msg(headers: &[(&'static str, &'static str)]) -> M {
    M {
        headers: headers.to_vec(),
        priority: 4,
        id: 42,
        expires: 0,
        persistent: false,
    }
}

fn sel(text: &str) -> Selector {
    Selector::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn check(text: &str, m: &M) -> bool {
    sel(text).matches(m)
}

fn err(text: &str) -> SelectorError {
    match Selector::parse(text) {
        Ok(s) => panic!("{text:?} parsed as {:?}", s.expr()),
        Err(e) => e,
    }
}

#[test]
fn comparisons_of_strings_and_numbers() {
    let m = msg(&[("color", "red"), ("size", "10"), ("weight", "2.5")]);
    assert!(check("color = 'red'", &m));
    assert!(!check("color = 'blue'", &m));
    assert!(check("color <> 'blue'", &m));
    assert!(check("size = 10", &m));
    assert!(check("size > 9 AND size < 11", &m));
    assert!(check("size >= 10 AND size <= 10", &m));
    assert!(
        check("weight > 2", &m),
        "a fraction still compares as a number"
    );
    assert!(check("weight = 2.5", &m));
    assert!(check("size = '10'", &m), "string to string");
    assert!(!check("size = '10.0'", &m));
    assert!(check("size = 10.0", &m), "numbers compare by value");
    assert!(
        check("color > 'blue'", &m),
        "strings order lexically, as ActiveMQ does"
    );
    assert!(
        !check("color > 5", &m),
        "a string that is no number is unknown against one"
    );
    assert!(
        !check("NOT (color > 5)", &m),
        "…and NOT of unknown is still unknown"
    );
}

#[test]
fn missing_headers_are_null_and_unknown() {
    let m = msg(&[("a", "1")]);
    assert!(!check("missing = 1", &m));
    assert!(!check("missing <> 1", &m));
    assert!(!check("NOT (missing = 1)", &m));
    assert!(check("missing IS NULL", &m));
    assert!(!check("a IS NULL", &m));
    assert!(check("a IS NOT NULL", &m));
    // Unknown OR true is true; unknown AND false is false; unknown AND true is unknown.
    assert!(check("missing = 1 OR a = 1", &m));
    assert!(!check("missing = 1 AND a = 1", &m));
    assert!(check("NOT (missing = 1 AND a = 2)", &m));
    assert!(!check("NOT (missing = 1 AND a = 1)", &m));
    assert!(!check("missing LIKE 'x%'", &m));
    assert!(!check("missing NOT LIKE 'x%'", &m));
    assert!(!check("missing IN ('x')", &m));
    assert!(!check("missing NOT IN ('x')", &m));
    assert!(!check("missing BETWEEN 1 AND 2", &m));
    assert!(!check("missing NOT BETWEEN 1 AND 2", &m));
    assert!(!check("a = NULL", &m), "a comparison with NULL is unknown");
}

#[test]
fn logic_and_precedence() {
    let m = msg(&[("a", "1"), ("b", "2")]);
    assert!(
        check("a = 1 OR b = 3 AND b = 4", &m),
        "AND binds tighter than OR"
    );
    assert!(!check("(a = 1 OR b = 3) AND b = 4", &m));
    assert!(
        check("NOT a = 2", &m),
        "NOT binds looser than =, as JMS says"
    );
    assert!(check("NOT NOT a = 1", &m));
    assert!(check("TRUE", &m));
    assert!(!check("FALSE", &m));
    assert!(check("true AnD NOT false", &m), "keywords in any case");
    assert!(check("a = 1 AND (b = 2 OR (b = 3 AND a = 7))", &m));
}

#[test]
fn arithmetic() {
    let m = msg(&[("x", "7"), ("y", "2"), ("f", "0.5"), ("s", "abc")]);
    assert!(check("x + y = 9", &m));
    assert!(check("x - y * 3 = 1", &m), "* before -");
    assert!(check("(x - y) * 3 = 15", &m));
    assert!(
        check("x / y = 3", &m),
        "integer division truncates, as in Java"
    );
    assert!(check("x % y = 1", &m));
    assert!(check("x * f = 3.5", &m));
    assert!(check("-x = -7", &m));
    assert!(check("- -x = 7", &m));
    assert!(check("+x = 7", &m));
    assert!(check("x / 0 IS NULL", &m), "division by zero has no value");
    assert!(
        check("s + 1 IS NULL", &m),
        "a string that is no number has no sum"
    );
    assert!(
        check("9223372036854775807 + 1 > 0", &m),
        "overflow goes to float, not round"
    );
    assert!(check("-9223372036854775808 < 0", &m));
    assert!(check("2e3 = 2000 AND .5 = 0.5 AND 1.5E-1 = 0.15", &m));
    assert!(check("0x1F = 31 AND 017 = 15 AND 10L = 10", &m));
}

#[test]
fn like_with_wildcards_and_escape() {
    let m = msg(&[("name", "order_123"), ("u", "héllo wörld"), ("pct", "50%")]);
    assert!(check("name LIKE 'order%'", &m));
    assert!(check("name LIKE '%123'", &m));
    assert!(check("name LIKE '%der%2%'", &m));
    assert!(check("name LIKE 'order____'", &m));
    assert!(!check("name LIKE 'order___'", &m));
    assert!(check("name NOT LIKE 'x%'", &m));
    assert!(check("name LIKE 'order\\_%' ESCAPE '\\'", &m));
    assert!(!check("name LIKE 'orde\\_%' ESCAPE '\\'", &m));
    assert!(check("pct LIKE '%!%' ESCAPE '!'", &m));
    assert!(
        check("u LIKE 'h_llo w_rld'", &m),
        "_ is one character, not one byte"
    );
    assert!(check("u LIKE '%%'", &m));
    assert!(check("name LIKE '%'", &m));
    assert!(!check("name LIKE ''", &m));
    assert!(!check("name LIKE 'Order%'", &m), "LIKE is case-sensitive");
}

#[test]
fn in_between_and_is_null() {
    let m = msg(&[("c", "UK"), ("n", "5"), ("q", "it's")]);
    assert!(check("c IN ('US', 'UK')", &m));
    assert!(!check("c NOT IN ('US', 'UK')", &m));
    assert!(check("c NOT IN ('FR')", &m));
    assert!(check("n BETWEEN 1 AND 5", &m));
    assert!(check("n BETWEEN 5 AND 9", &m));
    assert!(!check("n BETWEEN 6 AND 9", &m));
    assert!(check("n NOT BETWEEN 6 AND 9", &m));
    assert!(check("n BETWEEN 2 * 2 AND 3 + 3", &m));
    assert!(check("q = 'it''s'", &m));
}

#[test]
fn booleans_from_headers() {
    let m = msg(&[("urgent", "true"), ("quiet", "FALSE"), ("word", "yes")]);
    assert!(check("urgent", &m));
    assert!(check("urgent = TRUE", &m));
    assert!(check("NOT quiet", &m));
    assert!(check("quiet = false", &m));
    assert!(!check("word", &m), "a string that is no boolean is unknown");
    assert!(!check("NOT word", &m));
}

#[test]
fn jms_aliases() {
    let m = M {
        headers: vec![
            ("timestamp", "1700000000000"),
            ("type", "order"),
            ("correlation-id", "c-1"),
        ],
        priority: 7,
        id: 42,
        expires: 0,
        persistent: true,
    };
    assert!(check("JMSPriority > 5", &m));
    assert!(check("JMSPriority = 7", &m));
    assert!(check("JMSMessageID = 42 AND JMSMessageID = '42'", &m));
    assert!(check("JMSTimestamp > 1600000000000", &m));
    assert!(check("JMSType = 'order'", &m));
    assert!(check("JMSCorrelationID = 'c-1'", &m));
    assert!(check("JMSDeliveryMode = 'PERSISTENT'", &m));
    assert!(check("JMSExpiration = 0", &m));
    assert!(
        check("\"correlation-id\" = 'c-1'", &m),
        "quoted identifiers reach any header"
    );
    assert!(
        !check("jmspriority = 7", &m),
        "identifiers are case-sensitive"
    );
}

#[test]
fn errors_name_the_position() {
    let e = err("a = ");
    assert_eq!(e.position, 5, "{e}");
    let e = err("a = 1 AND");
    assert_eq!(e.position, 10, "{e}");
    let e = err("color = 'red");
    assert_eq!(e.position, 9, "{e}");
    assert!(e.reason.contains("unterminated"), "{e}");
    let e = err("a == 1");
    assert_eq!(e.position, 4, "{e}");
    let e = err("(a = 1");
    assert_eq!(e.position, 7, "{e}");
    assert!(e.reason.contains(')'), "{e}");
    let e = err("a = 1 b");
    assert_eq!(e.position, 7, "{e}");
    let e = err("a LIKE 5");
    assert_eq!(e.position, 8, "{e}");
    let e = err("a IN (1, 2)");
    assert_eq!(e.position, 7, "{e}");
    let e = err("a BETWEEN 1 2");
    assert_eq!(e.position, 13, "{e}");
    let e = err("a IS 5");
    assert_eq!(e.position, 6, "{e}");
    let e = err("1 + 2");
    assert!(e.reason.contains("condition"), "{e}");
    let e = err("'x' AND a = 1");
    assert_eq!(e.position, 1, "{e}");
    let e = err("a = 1 AND 'x'");
    assert_eq!(e.position, 11, "{e}");
    let e = err("'x' + 1 = 2");
    assert_eq!(e.position, 1, "{e}");
    let e = err("a = 12abc");
    assert_eq!(e.position, 5, "{e}");
    let e = err("a = 09");
    assert!(e.reason.contains("octal"), "{e}");
    let e = err("é = 1");
    assert_eq!(e.position, 1, "{e}");
    let e = err("a = 1 AND é = 1");
    assert_eq!(e.position, 11, "positions count characters: {e}");
    let e = err("a LIKE 'x!' ESCAPE '!'");
    assert!(e.reason.contains("escape"), "{e}");
    let e = err("a LIKE 'x' ESCAPE '!!'");
    assert!(e.reason.contains("one character"), "{e}");
    let e = err("AND = 1");
    assert!(e.reason.contains("keyword"), "{e}");
    let e = err("");
    assert_eq!(e.position, 1, "{e}");
    assert_eq!(
        err("a = ").to_string(),
        "invalid selector at position 5: unexpected end of the selector"
    );
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let deep = format!("{}a = 1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(err(&deep).reason.contains("deeper"));
    let nots = format!("{}a = 1", "NOT ".repeat(10_000));
    assert!(err(&nots).reason.contains("deeper"));
    let signs = format!("a = {}1", "- ".repeat(10_000));
    assert!(err(&signs).reason.contains("deeper"));
    let chain = format!("a = 1{}", " + 1".repeat(10_000));
    assert!(err(&chain).reason.contains("deeper"));
    // A long flat OR of comparisons is not deep.
    let flat = (0..5_000)
        .map(|n| format!("a = {n}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    assert!(check(&flat, &msg(&[("a", "4999")])));
    let fine = format!("{}a = 1{}", "(".repeat(50), ")".repeat(50));
    assert!(check(&fine, &msg(&[("a", "1")])));
}

#[test]
fn the_text_is_kept() {
    assert_eq!(sel("a = 1").text(), "a = 1");
    assert_eq!(sel(" a=1 ").to_string(), " a=1 ");
}

#[test]
fn the_canonical_text_parses_back_to_the_same_tree() {
    for text in [
        "a = 1 OR b <> 'x''y' AND NOT c > 2.5",
        "-x * (y + 3) % 2 >= -9223372036854775808",
        "name NOT LIKE 'a!%b\\_%' ESCAPE '\\'",
        "\"content-type\" IN ('a', 'b''c') AND n NOT BETWEEN 1 AND 1e300",
        "z IS NOT NULL OR JMSPriority = 4 OR JMSType = 'x' OR \"NOT\" = TRUE OR q = NULL",
        "flag",
    ] {
        let tree = sel(text).expr().clone();
        let shown = tree.to_string();
        assert_eq!(sel(&shown).expr(), &tree, "{text:?} shown as {shown:?}");
    }
}
