//! Conversions between [`TcpAddress`] and [`SocketAddr`].

use crate::destination::TcpAddress;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A [`TcpAddress`] did not hold a valid IP address or port.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid TcpAddress: ip has {ip_len} octets (want 4 or 16), port {port} (want <= 65535)")]
pub struct InvalidAddr {
    ip_len: usize,
    port: u32,
}

impl From<SocketAddr> for TcpAddress {
    fn from(sa: SocketAddr) -> Self {
        let ip = match sa.ip() {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        TcpAddress {
            ip,
            port: u32::from(sa.port()),
        }
    }
}

impl TryFrom<&TcpAddress> for SocketAddr {
    type Error = InvalidAddr;

    fn try_from(a: &TcpAddress) -> Result<Self, Self::Error> {
        let err = || InvalidAddr {
            ip_len: a.ip.len(),
            port: a.port,
        };
        let port = u16::try_from(a.port).map_err(|_| err())?;
        let ip = match a.ip.len() {
            4 => IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(&a.ip[..]).map_err(|_| err())?,
            )),
            16 => IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&a.ip[..]).map_err(|_| err())?,
            )),
            _ => return Err(err()),
        };
        Ok(SocketAddr::new(ip, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for s in ["10.1.2.3:8080", "[fd00::1]:443"] {
            let sa: SocketAddr = s.parse().unwrap();
            let t = TcpAddress::from(sa);
            assert_eq!(SocketAddr::try_from(&t), Ok(sa));
        }
        let bad = TcpAddress {
            ip: vec![1, 2, 3],
            port: 1,
        };
        assert!(SocketAddr::try_from(&bad).is_err());
        let bad_port = TcpAddress {
            ip: vec![1, 2, 3, 4],
            port: 70000,
        };
        assert!(SocketAddr::try_from(&bad_port).is_err());
    }
}
