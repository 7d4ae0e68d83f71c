//! The tree a selector parses into, and its canonical text: fully parenthesised, so that it
//! parses back to the same tree (the selector fuzz target checks that).

use std::fmt;

use super::lex::{field, identifier, KEYWORDS};

/// A parsed selector expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<str>),
    Field(Field),
    Neg(Box<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Like {
        value: Box<Expr>,
        pattern: Box<[Like]>,
        negated: bool,
    },
    In {
        value: Box<Expr>,
        list: Box<[Box<str>]>,
        negated: bool,
    },
    Between {
        value: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    IsNull {
        value: Box<Expr>,
        negated: bool,
    },
}

/// What an identifier reads from the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// A header, as a string (`JMSType`, `JMSCorrelationID` and `JMSTimestamp` are the
    /// headers `type`, `correlation-id` and `timestamp`).
    Header(Box<str>),
    /// `JMSPriority`: 0–9.
    Priority,
    /// `JMSMessageID`: the broker's message id.
    MessageId,
    /// `JMSExpiration`: absolute expiry in ms since the epoch, 0 when none.
    Expiration,
    /// `JMSDeliveryMode`: `'PERSISTENT'` or `'NON_PERSISTENT'`.
    DeliveryMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One step of a compiled LIKE pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Like {
    /// This exact character.
    Char(char),
    /// `_`: any one character.
    One,
    /// `%`: any run of characters, empty included.
    Many,
}

/// The canonical text of a tree: fully parenthesised, so that it parses back to the same
/// tree (the selector fuzz target checks that).
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let not = |negated: bool| if negated { "NOT " } else { "" };
        match self {
            Expr::Null => f.write_str("NULL"),
            Expr::Bool(b) => f.write_str(if *b { "TRUE" } else { "FALSE" }),
            Expr::Int(n) => write!(f, "{n}"),
            // `{:?}` always shows a fraction or an exponent, so it reads back as a float.
            Expr::Float(x) => write!(f, "{x:?}"),
            Expr::Str(s) => write_quoted(f, s, '\''),
            Expr::Field(field) => write!(f, "{field}"),
            Expr::Neg(inner) => write!(f, "(-{inner})"),
            Expr::Arith(op, l, r) => {
                let op = match op {
                    ArithOp::Add => "+",
                    ArithOp::Sub => "-",
                    ArithOp::Mul => "*",
                    ArithOp::Div => "/",
                    ArithOp::Rem => "%",
                };
                write!(f, "({l} {op} {r})")
            }
            Expr::Cmp(op, l, r) => {
                let op = match op {
                    CmpOp::Eq => "=",
                    CmpOp::Ne => "<>",
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::Ge => ">=",
                };
                write!(f, "({l} {op} {r})")
            }
            Expr::Not(inner) => write!(f, "(NOT {inner})"),
            Expr::And(terms) | Expr::Or(terms) => {
                let sep = if matches!(self, Expr::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                f.write_str("(")?;
                for (n, term) in terms.iter().enumerate() {
                    if n > 0 {
                        f.write_str(sep)?;
                    }
                    write!(f, "{term}")?;
                }
                f.write_str(")")
            }
            Expr::Like {
                value,
                pattern,
                negated,
            } => {
                let mut text = String::new();
                let mut escaped = false;
                for token in pattern.iter() {
                    match token {
                        Like::Many => text.push('%'),
                        Like::One => text.push('_'),
                        Like::Char(c @ ('%' | '_' | '!')) => {
                            escaped = true;
                            text.push('!');
                            text.push(*c);
                        }
                        Like::Char(c) => text.push(*c),
                    }
                }
                write!(f, "({value} {}LIKE ", not(*negated))?;
                write_quoted(f, &text, '\'')?;
                if escaped {
                    f.write_str(" ESCAPE '!'")?;
                }
                f.write_str(")")
            }
            Expr::In {
                value,
                list,
                negated,
            } => {
                write!(f, "({value} {}IN (", not(*negated))?;
                for (n, item) in list.iter().enumerate() {
                    if n > 0 {
                        f.write_str(", ")?;
                    }
                    write_quoted(f, item, '\'')?;
                }
                f.write_str("))")
            }
            Expr::Between {
                value,
                low,
                high,
                negated,
            } => write!(f, "({value} {}BETWEEN {low} AND {high})", not(*negated)),
            Expr::IsNull { value, negated } => write!(f, "({value} IS {}NULL)", not(*negated)),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Priority => f.write_str("JMSPriority"),
            Field::MessageId => f.write_str("JMSMessageID"),
            Field::Expiration => f.write_str("JMSExpiration"),
            Field::DeliveryMode => f.write_str("JMSDeliveryMode"),
            Field::Header(name) => {
                let bare = identifier(name).is_ok_and(|(rest, _)| rest.is_empty())
                    && !KEYWORDS.contains(&name.to_ascii_uppercase().as_str())
                    && field(name) == Field::Header(name.clone());
                if bare {
                    f.write_str(name)
                } else {
                    write_quoted(f, name, '"')
                }
            }
        }
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, text: &str, quote: char) -> fmt::Result {
    use std::fmt::Write;
    f.write_char(quote)?;
    for c in text.chars() {
        if c == quote {
            f.write_char(quote)?;
        }
        f.write_char(c)?;
    }
    f.write_char(quote)
}
