//! The selector grammar: nom for the tokens, recursive descent for precedence.
//!
//! ```text
//! selector := or
//! or       := and ( OR and )*
//! and      := not ( AND not )*
//! not      := NOT not | compare
//! compare  := sum [ (= | <> | < | <= | > | >=) sum
//!                 | [NOT] LIKE string [ESCAPE string]
//!                 | [NOT] BETWEEN sum AND sum
//!                 | [NOT] IN ( string , … )
//!                 | IS [NOT] NULL ]
//! sum      := product ( (+ | -) product )*
//! product  := unary ( (* | / | %) unary )*
//! unary    := (+ | -) unary | primary
//! primary  := literal | identifier | ( or )
//! ```
//!
//! Every error names the 1-based character position where the selector stopped making sense.

use super::ast::{ArithOp, CmpOp, Expr, Field};
use super::lex::{
    fail, keyword, like_pattern, number, quoted_identifier, skip_ws, string_literal, symbol, Fail,
    Res, KEYWORDS,
};
use super::lex::{field, identifier};
use super::SelectorError;

/// The type an expression evaluates to, as far as the parser can tell; headers are `Any`
/// because a string header may be read as a number or a boolean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Num,
    Str,
    Any,
}

impl Expr {
    fn kind(&self) -> Kind {
        match self {
            Expr::Null => Kind::Any,
            Expr::Bool(_)
            | Expr::Cmp(..)
            | Expr::Not(_)
            | Expr::And(_)
            | Expr::Or(_)
            | Expr::Like { .. }
            | Expr::In { .. }
            | Expr::Between { .. }
            | Expr::IsNull { .. } => Kind::Bool,
            Expr::Int(_) | Expr::Float(_) | Expr::Neg(_) | Expr::Arith(..) => Kind::Num,
            Expr::Str(_) => Kind::Str,
            Expr::Field(Field::Header(_)) => Kind::Any,
            Expr::Field(Field::Priority | Field::MessageId | Field::Expiration) => Kind::Num,
            Expr::Field(Field::DeliveryMode) => Kind::Str,
        }
    }
}

/// A node and the height of its tree, so that evaluation depth stays bounded.
type Node = (Expr, usize);

/// Parses a whole selector.
pub(super) fn parse(text: &str, max_depth: usize) -> Result<Expr, SelectorError> {
    let parser = Parser_ { max_depth };
    let result = parser.or(text, 0).and_then(|(rest, (expr, _))| {
        let rest = skip_ws(rest);
        if !rest.is_empty() {
            return fail(
                rest,
                "expected AND, OR, a comparison or the end of the selector",
            );
        }
        check(rest, &expr, &[Kind::Bool], "a selector must be a condition")?;
        Ok((rest, expr))
    });
    match result {
        Ok((_, expr)) => Ok(expr),
        Err(Fail { at, reason }) => Err(SelectorError {
            position: text[..text.len() - at.len()].chars().count() + 1,
            reason,
        }),
    }
}

/// Refuses `expr` (which started at `at`) unless its kind is one of `allowed` or unknown.
fn check<'s>(at: &'s str, expr: &Expr, allowed: &[Kind], reason: &str) -> Result<(), Fail<'s>> {
    let kind = expr.kind();
    if kind == Kind::Any || allowed.contains(&kind) {
        Ok(())
    } else {
        Err(Fail {
            at,
            reason: reason.to_string(),
        })
    }
}

// Named with a trailing underscore so that it does not shadow nom's `Parser` trait.
struct Parser_ {
    max_depth: usize,
}

impl Parser_ {
    /// Refuses a tree taller than the limit, or recursion past it.
    fn deep<'s>(&self, at: &'s str, height: usize) -> Result<(), Fail<'s>> {
        if height > self.max_depth {
            Err(Fail {
                at,
                reason: format!("selector nests deeper than {} levels", self.max_depth),
            })
        } else {
            Ok(())
        }
    }

    fn or<'s>(&self, i: &'s str, depth: usize) -> Res<'s, Node> {
        self.logical(i, depth, "OR", Self::and, Expr::Or)
    }

    fn and<'s>(&self, i: &'s str, depth: usize) -> Res<'s, Node> {
        self.logical(i, depth, "AND", Self::not, Expr::And)
    }

    /// `operand ( keyword operand )*`, flattened into one n-ary node, so a long chain of ORs
    /// (or ANDs) is one level deep.
    fn logical<'s>(
        &self,
        i: &'s str,
        depth: usize,
        keyword_text: &'static str,
        operand: for<'a> fn(&Self, &'a str, usize) -> Res<'a, Node>,
        node: fn(Vec<Expr>) -> Expr,
    ) -> Res<'s, Node> {
        let start = skip_ws(i);
        let (mut rest, (first, mut height)) = operand(self, start, depth)?;
        let mut terms = vec![first];
        while let Some(after) = keyword(rest, keyword_text) {
            let at = skip_ws(after);
            let (r, (term, h)) = operand(self, at, depth)?;
            let reason = format!("expected a condition after {keyword_text}");
            check(at, &term, &[Kind::Bool], &reason)?;
            terms.push(term);
            height = height.max(h);
            rest = r;
        }
        if terms.len() == 1 {
            return Ok((rest, (terms.pop().expect("one term"), height)));
        }
        let reason = format!("expected a condition before {keyword_text}");
        check(start, &terms[0], &[Kind::Bool], &reason)?;
        self.deep(start, height + 1)?;
        Ok((rest, (node(terms), height + 1)))
    }

    fn not<'s>(&self, i: &'s str, depth: usize) -> Res<'s, Node> {
        let start = skip_ws(i);
        if let Some(after) = keyword(start, "NOT") {
            self.deep(start, depth + 1)?;
            let at = skip_ws(after);
            let (rest, (inner, h)) = self.not(at, depth + 1)?;
            check(at, &inner, &[Kind::Bool], "expected a condition after NOT")?;
            self.deep(start, h + 1)?;
            return Ok((rest, (Expr::Not(Box::new(inner)), h + 1)));
        }
        self.compare(start, depth)
    }

    fn compare<'s>(&self, i: &'s str, depth: usize) -> Res<'s, Node> {
        let start = skip_ws(i);
        let (rest, (left, lh)) = self.sum(start, depth)?;
        let ops = [
            ("<>", CmpOp::Ne),
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("=", CmpOp::Eq),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
        ];
        for (symbol_text, op) in ops {
            if let Some(after) = symbol(rest, symbol_text) {
                let at = skip_ws(after);
                let (rest, (right, rh)) = self.sum(at, depth)?;
                let height = lh.max(rh) + 1;
                self.deep(start, height)?;
                return Ok((
                    rest,
                    (Expr::Cmp(op, Box::new(left), Box::new(right)), height),
                ));
            }
        }
        if let Some(after) = keyword(rest, "IS") {
            let (after, negated) = match keyword(after, "NOT") {
                Some(a) => (a, true),
                None => (after, false),
            };
            let Some(after) = keyword(after, "NULL") else {
                return fail(skip_ws(after), "expected NULL");
            };
            self.deep(start, lh + 1)?;
            let value = Box::new(left);
            return Ok((after, (Expr::IsNull { value, negated }, lh + 1)));
        }
        let (after_not, negated) = match keyword(rest, "NOT") {
            Some(a) => (a, true),
            None => (rest, false),
        };
        if let Some(after) = keyword(after_not, "LIKE") {
            check(
                start,
                &left,
                &[Kind::Str],
                "LIKE needs a string on its left",
            )?;
            let at = skip_ws(after);
            if !at.starts_with('\'') {
                return fail(at, "expected a string pattern after LIKE");
            }
            let (mut rest, pattern) = string_literal(at)?;
            let mut escape = None;
            if let Some(after) = keyword(rest, "ESCAPE") {
                let esc_at = skip_ws(after);
                if !esc_at.starts_with('\'') {
                    return fail(esc_at, "expected a one-character string after ESCAPE");
                }
                let (r, e) = string_literal(esc_at)?;
                let mut chars = e.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => escape = Some(c),
                    _ => return fail(esc_at, "the ESCAPE string must be one character"),
                }
                rest = r;
            }
            let pattern = like_pattern(at, &pattern, escape)?;
            self.deep(start, lh + 1)?;
            let value = Box::new(left);
            let like = Expr::Like {
                value,
                pattern,
                negated,
            };
            return Ok((rest, (like, lh + 1)));
        }
        if let Some(after) = keyword(after_not, "BETWEEN") {
            let at = skip_ws(after);
            let (after, (low, h1)) = self.sum(at, depth)?;
            let Some(after) = keyword(after, "AND") else {
                return fail(skip_ws(after), "expected AND in BETWEEN … AND …");
            };
            let at = skip_ws(after);
            let (rest, (high, h2)) = self.sum(at, depth)?;
            let height = lh.max(h1).max(h2) + 1;
            self.deep(start, height)?;
            let between = Expr::Between {
                value: Box::new(left),
                low: Box::new(low),
                high: Box::new(high),
                negated,
            };
            return Ok((rest, (between, height)));
        }
        if let Some(after) = keyword(after_not, "IN") {
            check(start, &left, &[Kind::Str], "IN needs a string on its left")?;
            let Some(mut rest) = symbol(after, "(") else {
                return fail(skip_ws(after), "expected ( after IN");
            };
            let mut list = Vec::new();
            loop {
                let at = skip_ws(rest);
                if !at.starts_with('\'') {
                    return fail(at, "expected a string literal in the IN list");
                }
                let (r, s) = string_literal(at)?;
                list.push(s.into_boxed_str());
                if let Some(r) = symbol(r, ",") {
                    rest = r;
                } else if let Some(r) = symbol(r, ")") {
                    rest = r;
                    break;
                } else {
                    return fail(skip_ws(r), "expected , or ) in the IN list");
                }
            }
            self.deep(start, lh + 1)?;
            let value = Box::new(left);
            let list = list.into_boxed_slice();
            return Ok((
                rest,
                (
                    Expr::In {
                        value,
                        list,
                        negated,
                    },
                    lh + 1,
                ),
            ));
        }
        if negated {
            return fail(skip_ws(after_not), "expected LIKE, BETWEEN or IN after NOT");
        }
        Ok((rest, (left, lh)))
    }

    fn sum<'s>(&self, i: &'s str, depth: usize) -> Res<'s, Node> {
        self.chain(
            i,
            depth,
            &[("+", ArithOp::Add), ("-", ArithOp::Sub)],
            Self::product,
        )
    }

    fn product<'s>(&self, i: &'s str, depth: usize) -> Res<'s, Node> {
        let ops = [
            ("*", ArithOp::Mul),
            ("/", ArithOp::Div),
            ("%", ArithOp::Rem),
        ];
        self.chain(i, depth, &ops, Self::unary)
    }

    /// A left-associative chain of arithmetic operators over `operand`.
    fn chain<'s>(
        &self,
        i: &'s str,
        depth: usize,
        ops: &[(&'static str, ArithOp)],
        operand: for<'a> fn(&Self, &'a str, usize) -> Res<'a, Node>,
    ) -> Res<'s, Node> {
        let start = skip_ws(i);
        let (mut rest, (mut left, mut height)) = operand(self, start, depth)?;
        'more: loop {
            for &(text, op) in ops {
                if let Some(after) = symbol(rest, text) {
                    check(start, &left, &[Kind::Num], "arithmetic needs a number")?;
                    let at = skip_ws(after);
                    let (r, (right, h)) = operand(self, at, depth)?;
                    check(at, &right, &[Kind::Num], "arithmetic needs a number")?;
                    height = height.max(h) + 1;
                    self.deep(start, height)?;
                    left = Expr::Arith(op, Box::new(left), Box::new(right));
                    rest = r;
                    continue 'more;
                }
            }
            return Ok((rest, (left, height)));
        }
    }

    fn unary<'s>(&self, i: &'s str, depth: usize) -> Res<'s, Node> {
        let start = skip_ws(i);
        for (text, negate) in [("-", true), ("+", false)] {
            if let Some(after) = symbol(start, text) {
                self.deep(start, depth + 1)?;
                let at = skip_ws(after);
                let (rest, (inner, h)) = self.unary(at, depth + 1)?;
                check(at, &inner, &[Kind::Num], "expected a number after a sign")?;
                if !negate {
                    return Ok((rest, (inner, h)));
                }
                // Fold a negated literal, so that -9223372036854775808 stays an integer.
                let negated = match inner {
                    Expr::Int(n) => Expr::Int(n.wrapping_neg()),
                    Expr::Float(9_223_372_036_854_775_808.0) => Expr::Int(i64::MIN),
                    Expr::Float(f) => Expr::Float(-f),
                    other => Expr::Neg(Box::new(other)),
                };
                self.deep(start, h + 1)?;
                return Ok((rest, (negated, h + 1)));
            }
        }
        self.primary(start, depth)
    }

    fn primary<'s>(&self, i: &'s str, depth: usize) -> Res<'s, Node> {
        let i = skip_ws(i);
        let Some(c) = i.chars().next() else {
            return fail(i, "unexpected end of the selector");
        };
        if c == '(' {
            self.deep(i, depth + 1)?;
            let (rest, node) = self.or(&i[1..], depth + 1)?;
            let Some(rest) = symbol(rest, ")") else {
                return fail(skip_ws(rest), "expected )");
            };
            return Ok((rest, node));
        }
        if c == '\'' {
            let (rest, s) = string_literal(i)?;
            return Ok((rest, (Expr::Str(s.into_boxed_str()), 1)));
        }
        if c == '"' {
            let (rest, name) = quoted_identifier(i)?;
            return Ok((rest, (Expr::Field(Field::Header(name.into_boxed_str())), 1)));
        }
        if c.is_ascii_digit() || (c == '.' && i[1..].starts_with(|d: char| d.is_ascii_digit())) {
            let (rest, n) = number(i)?;
            return Ok((rest, (n, 1)));
        }
        if let Ok((rest, name)) = identifier(i) {
            let upper = name.to_ascii_uppercase();
            return match upper.as_str() {
                "TRUE" => Ok((rest, (Expr::Bool(true), 1))),
                "FALSE" => Ok((rest, (Expr::Bool(false), 1))),
                "NULL" => Ok((rest, (Expr::Null, 1))),
                kw if KEYWORDS.contains(&kw) => {
                    fail(i, format!("expected a value, found the keyword {name}"))
                }
                _ => Ok((rest, (Expr::Field(field(name)), 1))),
            };
        }
        fail(i, format!("unexpected character '{c}'"))
    }
}
