//! PROXY protocol v1 and v2 (HAProxy's spec), for servers behind a TCP load
//! balancer: the balancer prepends the miner's real address, which then
//! stands in for the peer address everywhere (limits, bans, share records).
//! Sans-IO: [`parse`] reads from the bytes received so far.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included.
const V1_MAX: usize = 107;

/// A header that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The bytes are not a PROXY header.
    #[error("expected a PROXY protocol header")]
    Missing,
    /// A v1 header that does not parse.
    #[error("malformed PROXY v1 header: {0}")]
    BadV1(String),
    /// A v2 header that does not parse.
    #[error("malformed PROXY v2 header: {0}")]
    BadV2(&'static str),
}

/// What a header says: the client's address (`None` for LOCAL/UNKNOWN, i.e.
/// the balancer's own health checks), and how many bytes it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The real client.
    pub source: Option<SocketAddr>,
    /// Header length in bytes.
    pub len: usize,
}

/// Reads a header from the start of `buf`; `Ok(None)` means more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Ok(None)
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(6);
    if buf[..n] != b"PROXY "[..n] {
        return Err(ProxyError::Missing);
    }
    parse_v1(buf)
}

fn parse_v1(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError::BadV1("no CRLF within 107 bytes".into()))
        } else {
            Ok(None)
        };
    };
    let line =
        std::str::from_utf8(&buf[..end]).map_err(|_| ProxyError::BadV1("not ASCII".into()))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let source = match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => None,
        ["PROXY", proto @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let ip: IpAddr = src
                .parse()
                .map_err(|_| ProxyError::BadV1(format!("source {src:?}")))?;
            if (*proto == "TCP4") != ip.is_ipv4() {
                return Err(ProxyError::BadV1(format!("{proto} with source {src}")));
            }
            let port: u16 = sport
                .parse()
                .map_err(|_| ProxyError::BadV1(format!("port {sport:?}")))?;
            Some(SocketAddr::new(ip, port))
        }
        _ => return Err(ProxyError::BadV1(line.chars().take(60).collect())),
    };
    Ok(Some(ProxyHeader {
        source,
        len: end + 2,
    }))
}

fn parse_v2(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let (ver_cmd, family) = (buf[12], buf[13]);
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::BadV2("version is not 2"));
    }
    let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if buf.len() < len {
        return Ok(None);
    }
    let body = &buf[16..len];
    let source = match (ver_cmd & 0x0f, family) {
        (0, _) => None, // LOCAL: the balancer itself
        (1, 0x11) => {
            let b: &[u8; 12] = body
                .get(..12)
                .and_then(|b| b.try_into().ok())
                .ok_or(ProxyError::BadV2("short IPv4 block"))?;
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            Some(SocketAddr::new(ip.into(), u16::from_be_bytes([b[8], b[9]])))
        }
        (1, 0x21) => {
            let b: &[u8; 36] = body
                .get(..36)
                .and_then(|b| b.try_into().ok())
                .ok_or(ProxyError::BadV2("short IPv6 block"))?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&b[..16]);
            Some(SocketAddr::new(
                Ipv6Addr::from(ip).into(),
                u16::from_be_bytes([b[32], b[33]]),
            ))
        }
        (1, _) => None, // UNIX or unspecified: no IP to use
        _ => return Err(ProxyError::BadV2("unknown command")),
    };
    Ok(Some(ProxyHeader { source, len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_tcp4_and_tcp6() {
        let h = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 3333\r\n{\"id\":1}";
        let p = parse(h).expect("valid").expect("complete");
        assert_eq!(p.source, Some("203.0.113.7:51000".parse().expect("addr")));
        assert_eq!(&h[p.len..], b"{\"id\":1}");
        let p = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 3333\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(p.source, Some("[2001:db8::1]:4000".parse().expect("addr")));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n")
                .expect("valid")
                .expect("complete")
                .source,
            None
        );
    }

    #[test]
    fn v1_partial_and_bad() {
        assert_eq!(parse(b"PRO"), Ok(None));
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Ok(None));
        assert!(matches!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 x 1\r\n"),
            Err(ProxyError::BadV1(_))
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 ::1 ::1 1 1\r\n"),
            Err(ProxyError::BadV1(_))
        ));
        assert_eq!(parse(b"{\"id\":1,\"method\""), Err(ProxyError::Missing));
        assert!(parse(&[b'P', b'R', b'O', b'X', b'Y', b' ', b'A'].repeat(20)).is_err());
    }

    #[test]
    fn v2_tcp4() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend([
            0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0xc3, 0x50, 0x0d, 0x05,
        ]);
        h.extend(b"rest");
        assert_eq!(parse(&h[..20]), Ok(None));
        let p = parse(&h).expect("valid").expect("complete");
        assert_eq!(p.source, Some("198.51.100.9:50000".parse().expect("addr")));
        assert_eq!(&h[p.len..], b"rest");
        let mut local = V2_SIGNATURE.to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(
            parse(&local),
            Ok(Some(ProxyHeader {
                source: None,
                len: 16
            }))
        );
    }
}
