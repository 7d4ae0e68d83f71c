//! JMS message selectors: the `selector` header of SUBSCRIBE.
//!
//! The grammar is JMS 1.1 §3.8 (a subset of SQL-92) as ActiveMQ implements it
//! (`SelectorParser.jj`), parsed once per subscription with nom (`parse.rs`) into an [`Expr`]
//! tree that `eval.rs` evaluates per message without allocating.
//!
//! - Comparisons `= <> < > <= >=`, `AND OR NOT`, parentheses, arithmetic `+ - * / %`,
//!   `[NOT] LIKE 'pattern' [ESCAPE 'c']` with `%` and `_`, `[NOT] IN ('a', …)`,
//!   `[NOT] BETWEEN x AND y`, `IS [NOT] NULL`; string (`'it''s'`), integer (decimal, `0x` hex,
//!   octal, optional `L`), floating point and boolean literals; keywords in any case.
//! - Three-valued logic: a missing header is NULL, a comparison with NULL is unknown, `NOT`
//!   of unknown is unknown, and a message matches only when the whole selector is true.
//! - STOMP headers are strings. As ActiveMQ does for STOMP (it prefixes every STOMP selector
//!   with `convert_string_expressions:`), a header compared with a number, or used in
//!   arithmetic, is read as a number when its value parses as one; otherwise that comparison
//!   is unknown. A header compared with `TRUE`/`FALSE` is read as a boolean (`true`/`false`
//!   in any case).
//! - The JMS header names are aliases: `JMSPriority` (the message's priority, a number),
//!   `JMSMessageID` (the `message-id`, a number), `JMSTimestamp` (the `timestamp` header),
//!   `JMSExpiration` (the `expires` time, 0 when none), `JMSType` (`type`),
//!   `JMSCorrelationID` (`correlation-id`), `JMSDeliveryMode` (`'PERSISTENT'` or
//!   `'NON_PERSISTENT'`).
//!
//! Where ActiveMQ is surprising we do the sensible thing (all in `docs/compatibility.md`):
//! `NOT` binds looser than a comparison, as the JMS specification says (ActiveMQ's grammar
//! binds it tighter, so `NOT a = 1` means `(NOT a) = 1` there); a string compared with an
//! integer literal is compared as a number even when it has a fraction (ActiveMQ parses it as
//! a long and gives false for `'2.5' > 2`); and identifiers may be written in double quotes
//! (`"my-header" = 'x'`) so that STOMP headers with a `-` can be selected.

mod ast;
mod eval;
mod lex;
mod parse;

use std::fmt;

pub use ast::Expr;
pub use eval::Subject;

use crate::limits::SELECTOR_MAX_DEPTH;

/// A parsed selector, ready to test messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    expr: Expr,
    text: Box<str>,
}

/// Why a selector was refused: where (1-based character position in the selector) and what
/// was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    pub position: usize,
    pub reason: String,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid selector at position {}: {}",
            self.position, self.reason
        )
    }
}

impl std::error::Error for SelectorError {}

impl Selector {
    /// Parses `text`; nesting deeper than [`SELECTOR_MAX_DEPTH`] is refused, so evaluation
    /// never recurses without bound.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let expr = parse::parse(text, SELECTOR_MAX_DEPTH)?;
        Ok(Selector {
            expr,
            text: text.into(),
        })
    }

    /// True when the selector is true for `subject` (unknown and false do not match).
    pub fn matches(&self, subject: &impl Subject) -> bool {
        eval::matches(&self.expr, subject)
    }

    /// The selector as the client wrote it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parsed tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests;
