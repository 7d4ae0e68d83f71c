//! Sans-IO STOMP codec: bytes in, [`Frame`]s out, and back.
//!
//! It owns the wire format only: frame grammar, line ends, header escaping per protocol
//! version, `content-length` bodies and the size limits in [`crate::limits::Limits`]. It knows
//! nothing of sessions or destinations; the session layer decides what a frame means.

mod encode;
mod escape;
mod frame;
mod parse;
mod version;

pub(crate) use encode::decimal;
pub use encode::{encode, encode_into, encode_message, encoded_len, MessageFrame};
pub use escape::{escape_into, unescape, Escaping};
pub use frame::{Command, Frame, Headers};
pub use parse::{Decoder, ParseError};
pub use version::Version;
