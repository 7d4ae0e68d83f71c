//! Evaluating a selector against one message: three-valued logic over values borrowed from
//! the message and the tree, with no allocation.

use std::cmp::Ordering;

use super::ast::{ArithOp, CmpOp, Expr, Field, Like};

/// What a selector reads from a message.
pub trait Subject {
    /// The first header called `name`, if any.
    fn header(&self, name: &str) -> Option<&str>;
    /// 0–9.
    fn priority(&self) -> u8;
    fn message_id(&self) -> u64;
    /// Absolute expiry in ms since the epoch, 0 = never.
    fn expires(&self) -> u64;
    fn persistent(&self) -> bool;
}

/// A value during evaluation; `Null` is SQL's NULL (a missing header, or an undefined result).
#[derive(Debug, Clone, Copy, PartialEq)]
enum V<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

/// True only when `expr` is true for `subject`: false and unknown do not match.
pub(super) fn matches(expr: &Expr, subject: &impl Subject) -> bool {
    truth(expr, subject) == Some(true)
}

/// Three-valued truth: `None` is unknown.
fn truth<S: Subject>(expr: &Expr, s: &S) -> Option<bool> {
    match expr {
        Expr::And(terms) => {
            let mut unknown = false;
            for term in terms {
                match truth(term, s) {
                    Some(false) => return Some(false),
                    None => unknown = true,
                    Some(true) => {}
                }
            }
            if unknown {
                None
            } else {
                Some(true)
            }
        }
        Expr::Or(terms) => {
            let mut unknown = false;
            for term in terms {
                match truth(term, s) {
                    Some(true) => return Some(true),
                    None => unknown = true,
                    Some(false) => {}
                }
            }
            if unknown {
                None
            } else {
                Some(false)
            }
        }
        Expr::Not(inner) => truth(inner, s).map(|b| !b),
        Expr::Cmp(op, left, right) => compare_op(*op, value(left, s), value(right, s)),
        Expr::Like {
            value: v,
            pattern,
            negated,
        } => match value(v, s) {
            V::Str(text) => Some(like(pattern, text) != *negated),
            _ => None,
        },
        Expr::In {
            value: v,
            list,
            negated,
        } => match value(v, s) {
            V::Str(text) => Some(list.iter().any(|item| &**item == text) != *negated),
            _ => None,
        },
        Expr::Between {
            value: v,
            low,
            high,
            negated,
        } => {
            let v = value(v, s);
            let above = compare_op(CmpOp::Ge, v, value(low, s));
            let below = compare_op(CmpOp::Le, v, value(high, s));
            let within = match (above, below) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
            within.map(|b| b != *negated)
        }
        Expr::IsNull { value: v, negated } => Some((value(v, s) == V::Null) != *negated),
        other => match value(other, s) {
            V::Bool(b) => Some(b),
            V::Str(text) => parse_bool(text),
            _ => None,
        },
    }
}

fn value<'a, S: Subject>(expr: &'a Expr, s: &'a S) -> V<'a> {
    match expr {
        Expr::Null => V::Null,
        Expr::Bool(b) => V::Bool(*b),
        Expr::Int(n) => V::Int(*n),
        Expr::Float(f) => V::Float(*f),
        Expr::Str(text) => V::Str(text),
        Expr::Field(field) => match field {
            Field::Header(name) => s.header(name).map_or(V::Null, V::Str),
            Field::Priority => V::Int(i64::from(s.priority())),
            Field::MessageId => i64::try_from(s.message_id()).map_or(V::Null, V::Int),
            Field::Expiration => i64::try_from(s.expires()).map_or(V::Null, V::Int),
            Field::DeliveryMode => V::Str(if s.persistent() {
                "PERSISTENT"
            } else {
                "NON_PERSISTENT"
            }),
        },
        Expr::Neg(inner) => match number(value(inner, s)) {
            V::Int(n) => n.checked_neg().map_or(V::Float(-(n as f64)), V::Int),
            V::Float(f) => V::Float(-f),
            _ => V::Null,
        },
        Expr::Arith(op, left, right) => arith(*op, number(value(left, s)), number(value(right, s))),
        condition => truth(condition, s).map_or(V::Null, V::Bool),
    }
}

/// `v` as a number: numbers as they are, a string when it parses as one (ActiveMQ's
/// `convert_string_expressions` for STOMP), anything else NULL.
fn number(v: V<'_>) -> V<'_> {
    match v {
        V::Int(_) | V::Float(_) => v,
        V::Str(text) => parse_number(text).unwrap_or(V::Null),
        V::Null | V::Bool(_) => V::Null,
    }
}

/// A decimal integer, else a decimal floating-point number; no spaces, no `inf` or `NaN`.
fn parse_number(text: &str) -> Option<V<'static>> {
    if text.is_empty()
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    if let Ok(n) = text.parse::<i64>() {
        return Some(V::Int(n));
    }
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(V::Float)
}

fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn arith<'a>(op: ArithOp, left: V<'a>, right: V<'a>) -> V<'a> {
    match (left, right) {
        (V::Int(a), V::Int(b)) => {
            let exact = match op {
                ArithOp::Add => a.checked_add(b),
                ArithOp::Sub => a.checked_sub(b),
                ArithOp::Mul => a.checked_mul(b),
                // Division by zero has no value; i64::MIN / -1 overflows into a float below.
                ArithOp::Div if b == 0 => return V::Null,
                ArithOp::Div => a.checked_div(b),
                ArithOp::Rem if b == 0 => return V::Null,
                ArithOp::Rem => Some(a.checked_rem(b).unwrap_or(0)),
            };
            exact.map_or_else(|| float_arith(op, a as f64, b as f64), V::Int)
        }
        (V::Int(a), V::Float(b)) => float_arith(op, a as f64, b),
        (V::Float(a), V::Int(b)) => float_arith(op, a, b as f64),
        (V::Float(a), V::Float(b)) => float_arith(op, a, b),
        _ => V::Null,
    }
}

fn float_arith(op: ArithOp, a: f64, b: f64) -> V<'static> {
    let r = match op {
        ArithOp::Add => a + b,
        ArithOp::Sub => a - b,
        ArithOp::Mul => a * b,
        ArithOp::Div => a / b,
        ArithOp::Rem => a % b,
    };
    if r.is_nan() {
        V::Null
    } else {
        V::Float(r)
    }
}

fn compare_op(op: CmpOp, left: V<'_>, right: V<'_>) -> Option<bool> {
    let ord = compare(left, right)?;
    Some(match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    })
}

/// How two values order, or `None` when they cannot be compared (NULL, NaN, a string that is
/// not a number compared with a number, a boolean with a number).
fn compare(left: V<'_>, right: V<'_>) -> Option<Ordering> {
    match (left, right) {
        (V::Null, _) | (_, V::Null) => None,
        (V::Int(a), V::Int(b)) => Some(a.cmp(&b)),
        (V::Int(a), V::Float(b)) => (a as f64).partial_cmp(&b),
        (V::Float(a), V::Int(b)) => a.partial_cmp(&(b as f64)),
        (V::Float(a), V::Float(b)) => a.partial_cmp(&b),
        (V::Str(a), V::Str(b)) => Some(a.cmp(b)),
        (V::Bool(a), V::Bool(b)) => Some(a.cmp(&b)),
        (V::Str(a), n @ (V::Int(_) | V::Float(_))) => compare(parse_number(a)?, n),
        (n @ (V::Int(_) | V::Float(_)), V::Str(b)) => compare(n, parse_number(b)?),
        (V::Bool(a), V::Str(b)) => Some(a.cmp(&parse_bool(b)?)),
        (V::Str(a), V::Bool(b)) => Some(parse_bool(a)?.cmp(&b)),
        (V::Bool(_), _) | (_, V::Bool(_)) => None,
    }
}

/// SQL LIKE over characters: `Many` matches any run, `One` any single character. Greedy with
/// one backtrack point, so O(pattern × text) at worst and no allocation.
fn like(pattern: &[Like], text: &str) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `%` was, and where in the text its match currently ends.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            match pattern[p] {
                Like::Many => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                Like::One => {
                    if let Some(c) = text[t..].chars().next() {
                        t += c.len_utf8();
                        p += 1;
                        continue;
                    }
                }
                Like::Char(c) => {
                    if text[t..].starts_with(c) {
                        t += c.len_utf8();
                        p += 1;
                        continue;
                    }
                }
            }
        } else if t == text.len() {
            return true;
        }
        // Mismatch: let the last `%` swallow one more character, or fail.
        let Some((star_p, star_t)) = star else {
            return false;
        };
        let Some(c) = text[star_t..].chars().next() else {
            return false;
        };
        let next = star_t + c.len_utf8();
        star = Some((star_p, next));
        p = star_p + 1;
        t = next;
    }
}
