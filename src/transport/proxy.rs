//! PROXY protocol v1 (text) and v2 (binary) headers, as HAProxy's `send-proxy` /
//! `send-proxy-v2` write them before the client's first byte. Parsing is `ppp`'s; this module
//! reads just enough of the stream, bounded in bytes and time, and hands back whatever
//! STOMP bytes followed the header.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use ppp::{HeaderResult, PartialResult};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest header we accept: a v1 header is at most 107 bytes; v2 headers from load
/// balancers carry a few TLVs. Anything longer is not a PROXY header we want.
pub const MAX_HEADER_BYTES: usize = 4096;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The bytes are not a PROXY header (v1 or v2).
    #[error("expected a PROXY protocol header: {0}")]
    Invalid(String),
    /// The header did not arrive in time, or the connection closed first.
    #[error("no complete PROXY protocol header within {0:?}")]
    Timeout(Duration),
    /// Reading failed.
    #[error("reading PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads a PROXY header. Returns the client's address from it (None for `LOCAL`/`UNKNOWN`,
/// e.g. a load balancer's own health check) and the bytes read past the header.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<(Option<SocketAddr>, BytesMut), ProxyError> {
    let mut buf = BytesMut::with_capacity(512);
    let read = async {
        loop {
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(ProxyError::Timeout(timeout));
            }
            let parsed = HeaderResult::parse(&buf[..]);
            if parsed.is_incomplete() {
                if buf.len() >= MAX_HEADER_BYTES {
                    return Err(ProxyError::Invalid(format!(
                        "longer than {MAX_HEADER_BYTES} bytes"
                    )));
                }
                continue;
            }
            return match parsed {
                HeaderResult::V1(Ok(h)) => {
                    let len = h.header.len();
                    let addr = match h.addresses {
                        ppp::v1::Addresses::Tcp4(a) => {
                            Some(SocketAddr::from((a.source_address, a.source_port)))
                        }
                        ppp::v1::Addresses::Tcp6(a) => {
                            Some(SocketAddr::from((a.source_address, a.source_port)))
                        }
                        ppp::v1::Addresses::Unknown => None,
                    };
                    Ok((addr, len))
                }
                HeaderResult::V2(Ok(h)) => {
                    let len = h.len();
                    let addr = match h.addresses {
                        ppp::v2::Addresses::IPv4(a) => {
                            Some(SocketAddr::from((a.source_address, a.source_port)))
                        }
                        ppp::v2::Addresses::IPv6(a) => {
                            Some(SocketAddr::from((a.source_address, a.source_port)))
                        }
                        _ => None,
                    };
                    Ok((addr, len))
                }
                HeaderResult::V1(Err(e)) => Err(ProxyError::Invalid(e.to_string())),
                HeaderResult::V2(Err(e)) => Err(ProxyError::Invalid(e.to_string())),
            };
        }
    };
    let (addr, len) = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ProxyError::Timeout(timeout))??;
    let rest = buf.split_off(len);
    Ok((addr, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn v1_header_then_stomp() {
        let input = b"PROXY TCP4 192.0.2.7 127.0.0.1 51000 61613\r\nCONNECT\n\n\0".to_vec();
        let (addr, rest) = read_header(&mut &input[..], Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(addr, Some("192.0.2.7:51000".parse().unwrap()));
        assert_eq!(&rest[..], b"CONNECT\n\n\0");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn v2_header_then_stomp() {
        let header = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            ppp::v2::IPv4::new([198, 51, 100, 9], [127, 0, 0, 1], 40000, 61613),
        )
        .build()
        .unwrap();
        let mut input = header;
        input.extend_from_slice(b"STOMP\n\n\0");
        let (addr, rest) = read_header(&mut &input[..], Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(addr, Some("198.51.100.9:40000".parse().unwrap()));
        assert_eq!(&rest[..], b"STOMP\n\n\0");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn plain_stomp_is_refused() {
        let input = b"CONNECT\naccept-version:1.2\n\n\0".to_vec();
        assert!(read_header(&mut &input[..], Duration::from_secs(1))
            .await
            .is_err());
    }
}
