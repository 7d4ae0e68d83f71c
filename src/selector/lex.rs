//! The selector's tokens, with nom: blanks, keywords, identifiers, literals and LIKE
//! patterns, and the failure every parse step returns.

use nom::bytes::complete::{tag, tag_no_case, take_while};
use nom::character::complete::{digit1, hex_digit1, multispace0, satisfy};
use nom::combinator::{not, peek, recognize};
use nom::sequence::{pair, preceded, terminated};
use nom::{IResult, Parser};

use super::ast::{Expr, Field, Like};

/// A parse failure: where (the rest of the input) and why.
pub(super) struct Fail<'s> {
    pub at: &'s str,
    pub reason: String,
}

pub(super) type Res<'s, T> = Result<(&'s str, T), Fail<'s>>;

pub(super) fn fail<'s, T>(at: &'s str, reason: impl Into<String>) -> Res<'s, T> {
    Err(Fail {
        at,
        reason: reason.into(),
    })
}

pub(super) const KEYWORDS: [&str; 11] = [
    "AND", "OR", "NOT", "LIKE", "ESCAPE", "IN", "BETWEEN", "IS", "NULL", "TRUE", "FALSE",
];

pub(super) fn skip_ws(i: &str) -> &str {
    multispace0::<_, nom::error::Error<&str>>(i)
        .map(|(rest, _)| rest)
        .unwrap_or(i)
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

pub(super) fn is_ident_part(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.'
}

/// `kw` in any case, not followed by an identifier character.
pub(super) fn keyword<'s>(i: &'s str, kw: &'static str) -> Option<&'s str> {
    let r: IResult<&str, &str> =
        terminated(tag_no_case(kw), not(peek(satisfy(is_ident_part)))).parse(skip_ws(i));
    r.ok().map(|(rest, _)| rest)
}

pub(super) fn symbol<'s>(i: &'s str, s: &'static str) -> Option<&'s str> {
    let r: IResult<&str, &str> = tag(s).parse(skip_ws(i));
    r.ok().map(|(rest, _)| rest)
}

pub(super) fn identifier(i: &str) -> IResult<&str, &str> {
    recognize(pair(satisfy(is_ident_start), take_while(is_ident_part))).parse(i)
}

/// `'…'` with `''` for a quote inside. `i` starts at the opening quote.
pub(super) fn string_literal(i: &str) -> Res<'_, String> {
    let mut out = String::new();
    let mut rest = &i[1..];
    loop {
        match rest.find('\'') {
            None => return fail(i, "unterminated string literal"),
            Some(at) => {
                out.push_str(&rest[..at]);
                rest = &rest[at + 1..];
                if let Some(after) = rest.strip_prefix('\'') {
                    out.push('\'');
                    rest = after;
                } else {
                    return Ok((rest, out));
                }
            }
        }
    }
}

/// `"…"` (with `""` for a quote inside): an identifier that may hold any character, so
/// headers such as `content-type` can be selected. An extension; ActiveMQ has no quoting.
pub(super) fn quoted_identifier(i: &str) -> Res<'_, String> {
    let mut out = String::new();
    let mut rest = &i[1..];
    loop {
        match rest.find('"') {
            None => return fail(i, "unterminated quoted identifier"),
            Some(at) => {
                out.push_str(&rest[..at]);
                rest = &rest[at + 1..];
                if let Some(after) = rest.strip_prefix('"') {
                    out.push('"');
                    rest = after;
                } else {
                    return Ok((rest, out));
                }
            }
        }
    }
}

/// `1.5`, `1.`, `.5`, `1e3`, `1.5E-3`: digits with a fraction, an exponent or both.
/// Scanned by hand in one pass over the bytes.
fn float_literal(i: &str) -> IResult<&str, &str> {
    let b = i.as_bytes();
    let digits = |from: usize| from + b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let int_end = digits(0);
    let mut end = int_end;
    let mut fraction = false;
    if b.get(end) == Some(&b'.') {
        let frac_end = digits(end + 1);
        if int_end > 0 || frac_end > end + 1 {
            fraction = true;
            end = frac_end;
        }
    }
    if int_end == 0 && !fraction {
        return Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Float,
        )));
    }
    let mut exponent = false;
    if matches!(b.get(end), Some(b'e' | b'E')) {
        let mut at = end + 1;
        if matches!(b.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let exp_end = digits(at);
        if exp_end > at {
            exponent = true;
            end = exp_end;
        }
    }
    if !fraction && !exponent {
        return Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Float,
        )));
    }
    Ok((&i[end..], &i[..end]))
}

/// A number literal at `i` (no sign: `-` is the unary operator).
pub(super) fn number(i: &str) -> Res<'_, Expr> {
    fn done<'s>(i: &'s str, rest: &'s str, expr: Expr) -> Res<'s, Expr> {
        match rest.chars().next() {
            Some(c) if is_ident_part(c) => fail(i, "malformed number"),
            _ => Ok((rest, expr)),
        }
    }
    let hex: IResult<&str, &str> = preceded(tag_no_case("0x"), hex_digit1).parse(i);
    if let Ok((rest, digits)) = hex {
        let rest = rest.strip_prefix(['l', 'L']).unwrap_or(rest);
        return match i64::from_str_radix(digits, 16) {
            Ok(n) => done(i, rest, Expr::Int(n)),
            Err(_) => fail(i, "integer literal out of range"),
        };
    }
    if let Ok((rest, text)) = float_literal(i) {
        return match text.parse::<f64>() {
            Ok(f) if f.is_finite() => done(i, rest, Expr::Float(f)),
            _ => fail(i, "floating-point literal out of range"),
        };
    }
    let dec: IResult<&str, &str> = digit1(i);
    let Ok((rest, digits)) = dec else {
        return fail(i, "expected a number");
    };
    let rest = rest.strip_prefix(['l', 'L']).unwrap_or(rest);
    if digits.len() > 1 && digits.starts_with('0') {
        return match i64::from_str_radix(&digits[1..], 8) {
            Ok(n) => done(i, rest, Expr::Int(n)),
            Err(_) => fail(i, "malformed octal literal"),
        };
    }
    match digits.parse::<i64>() {
        Ok(n) => done(i, rest, Expr::Int(n)),
        // Past i64::MAX: only -9223372036854775808 is still an integer; read it as a float,
        // as JMS would have to after negation anyway.
        Err(_) => match digits.parse::<f64>() {
            Ok(f) => done(i, rest, Expr::Float(f)),
            Err(_) => fail(i, "malformed number"),
        },
    }
}

/// The field an identifier names: a JMS header alias, or a STOMP header.
pub(super) fn field(name: &str) -> Field {
    match name {
        "JMSPriority" => Field::Priority,
        "JMSMessageID" => Field::MessageId,
        "JMSExpiration" => Field::Expiration,
        "JMSDeliveryMode" => Field::DeliveryMode,
        "JMSTimestamp" => Field::Header("timestamp".into()),
        "JMSType" => Field::Header("type".into()),
        "JMSCorrelationID" => Field::Header("correlation-id".into()),
        other => Field::Header(other.into()),
    }
}

/// Compiles a LIKE pattern; `escape` makes the character after it literal.
pub(super) fn like_pattern<'s>(
    at: &'s str,
    pattern: &str,
    escape: Option<char>,
) -> Result<Box<[Like]>, Fail<'s>> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let token = if Some(c) == escape {
            match chars.next() {
                Some(next) => Like::Char(next),
                None => {
                    return Err(Fail {
                        at,
                        reason: "LIKE pattern ends with its escape character".into(),
                    })
                }
            }
        } else if c == '%' {
            Like::Many
        } else if c == '_' {
            Like::One
        } else {
            Like::Char(c)
        };
        // `%%` matches what `%` matches; keeping one makes matching cheaper.
        if !(token == Like::Many && out.last() == Some(&Like::Many)) {
            out.push(token);
        }
    }
    Ok(out.into_boxed_slice())
}
