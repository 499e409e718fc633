//! Cluster URLs: `http://host:port` or `https://host:port`, nothing more.

use core::net::{Ipv4Addr, Ipv6Addr};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::shorten;

/// How a peer is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheme {
    /// Plain HTTP/1.1.
    Http,
    /// HTTP/1.1 over TLS (offered by the runtimes).
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The address of a core: scheme, host and an explicit, nonzero port.
///
/// Host names are stored lowercased and IP addresses in their canonical form,
/// so two spellings of the same core compare equal. IPv6 addresses are written
/// in brackets. A single trailing `/` is tolerated; a path, query, fragment or
/// user info is refused, because the cluster API lives at fixed paths and
/// credentials belong in `secret`.
///
/// ```
/// use mqtt_cluster_core::config::ClusterUrl;
/// let url: ClusterUrl = "http://Core1:8884/".parse().unwrap();
/// assert_eq!(url.to_string(), "http://core1:8884");
/// assert_eq!(url.authority(), "core1:8884");
/// let v6: ClusterUrl = "https://[::1]:443".parse().unwrap();
/// assert_eq!(v6.host(), "::1");
/// assert_eq!(v6.authority(), "[::1]:443");
/// assert!("http://core1".parse::<ClusterUrl>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterUrl {
    scheme: Scheme,
    /// Without brackets; only an IPv6 address contains `:`.
    host: String,
    port: u16,
}

impl ClusterUrl {
    /// `http` or `https`.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host name or IP address, without brackets for IPv6.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (never zero).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, with IPv6 addresses in brackets: what a client connects to
    /// and sends as the `Host` header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for ClusterUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority())
    }
}

/// Why a text is not a [`ClusterUrl`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterUrlError {
    /// No `scheme://` in front.
    #[error("it does not start with http:// or https://")]
    MissingScheme,
    /// A scheme other than `http` or `https`.
    #[error("scheme {scheme:?} is not supported, only http and https are")]
    UnsupportedScheme {
        /// The scheme that was written.
        scheme: String,
    },
    /// `user:password@` before the host.
    #[error("user info (`user@`) is not allowed; put the shared secret in `secret`")]
    UserInfo,
    /// A `?query`.
    #[error("a query (`?...`) is not allowed")]
    Query,
    /// A `#fragment`.
    #[error("a fragment (`#...`) is not allowed")]
    Fragment,
    /// Anything after the port but a single `/`.
    #[error("a path ({path:?}) is not allowed; the cluster API lives at fixed paths")]
    Path {
        /// The refused path.
        path: String,
    },
    /// Nothing between `://` and `:port`.
    #[error("the host is missing")]
    MissingHost,
    /// Not a host name, IPv4 address or bracketed IPv6 address.
    #[error("{host:?} is not a host name, an IPv4 address or a bracketed IPv6 address")]
    InvalidHost {
        /// The refused host.
        host: String,
    },
    /// No `:port` after the host; cluster URLs name their port explicitly.
    #[error("the port is missing (write it explicitly, e.g. :8884)")]
    MissingPort,
    /// A port that is not a number from 1 to 65535.
    #[error("port {port:?} is not a number from 1 to 65535")]
    InvalidPort {
        /// The refused port.
        port: String,
    },
}

impl FromStr for ClusterUrl {
    type Err = ClusterUrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or(ClusterUrlError::MissingScheme)?;
        let scheme = if scheme.eq_ignore_ascii_case("http") {
            Scheme::Http
        } else if scheme.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else {
            return Err(ClusterUrlError::UnsupportedScheme {
                scheme: shorten(scheme),
            });
        };
        if rest.contains('@') {
            return Err(ClusterUrlError::UserInfo);
        }
        if rest.contains('?') {
            return Err(ClusterUrlError::Query);
        }
        if rest.contains('#') {
            return Err(ClusterUrlError::Fragment);
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if let Some(slash) = authority.find('/') {
            return Err(ClusterUrlError::Path {
                path: shorten(authority.get(slash..).unwrap_or("/")),
            });
        }
        let (host, port) = split_authority(authority)?;
        let port = parse_port(port)?;
        Ok(ClusterUrl { scheme, host, port })
    }
}

/// Splits `host:port`, checks and canonicalises the host.
fn split_authority(authority: &str) -> Result<(String, &str), ClusterUrlError> {
    if authority.is_empty() {
        return Err(ClusterUrlError::MissingHost);
    }
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (inside, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid_host(authority))?;
        let ip: Ipv6Addr = inside.parse().map_err(|_| invalid_host(inside))?;
        let port = after
            .strip_prefix(':')
            .ok_or(ClusterUrlError::MissingPort)?;
        return Ok((ip.to_string(), port));
    }
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or(ClusterUrlError::MissingPort)?;
    if host.is_empty() {
        return Err(ClusterUrlError::MissingHost);
    }
    match canonical_name_or_ipv4(host) {
        Some(host) => Ok((host, port)),
        None => Err(invalid_host(host)),
    }
}

fn parse_port(port: &str) -> Result<u16, ClusterUrlError> {
    if port.is_empty() {
        return Err(ClusterUrlError::MissingPort);
    }
    // `u16::from_str` would also take a leading `+`.
    let number = if port.bytes().all(|b| b.is_ascii_digit()) {
        port.parse::<u16>().ok()
    } else {
        None
    };
    match number {
        Some(p) if p != 0 => Ok(p),
        _ => Err(ClusterUrlError::InvalidPort {
            port: shorten(port),
        }),
    }
}

fn invalid_host(host: &str) -> ClusterUrlError {
    ClusterUrlError::InvalidHost {
        host: shorten(host),
    }
}

/// A host name (lowercased) or a dotted IPv4 address (canonical), or `None`.
fn canonical_name_or_ipv4(host: &str) -> Option<String> {
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // Digits and dots only: meant as an address, so it must be one.
        return host.parse::<Ipv4Addr>().ok().map(|ip| ip.to_string());
    }
    is_host_name(host).then(|| host.to_ascii_lowercase())
}

/// A DNS-style name; `_` is allowed because container and service names use it.
fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Whether `host` is something a server can bind to or a client can reach:
/// a host name, an IPv4 address, or an IPv6 address with or without brackets.
pub(super) fn is_valid_host(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<Ipv6Addr>().is_ok() || canonical_name_or_ipv4(host).is_some()
}

impl Serialize for ClusterUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClusterUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ClusterUrl, ClusterUrlError> {
        s.parse()
    }

    #[test]
    fn accepts_names_ipv4_and_bracketed_ipv6() {
        let u = parse("http://core1:8884").unwrap();
        assert_eq!(
            (u.scheme(), u.host(), u.port()),
            (Scheme::Http, "core1", 8884)
        );
        let u = parse("HTTPS://Core-1.Example.COM:443/").unwrap();
        assert_eq!(u.to_string(), "https://core-1.example.com:443");
        let u = parse("http://10.0.0.7:1").unwrap();
        assert_eq!(u.authority(), "10.0.0.7:1");
        let u = parse("http://[2001:DB8:0:0::1]:8884").unwrap();
        assert_eq!(u.host(), "2001:db8::1");
        assert_eq!(u.to_string(), "http://[2001:db8::1]:8884");
        assert_eq!(parse("http://my_core:65535").unwrap().port(), 65535);
    }

    #[test]
    fn refuses_everything_but_scheme_host_and_port() {
        use ClusterUrlError::*;
        let cases: &[(&str, ClusterUrlError)] = &[
            ("core1:8884", MissingScheme),
            ("", MissingScheme),
            (
                "ftp://core1:21",
                UnsupportedScheme {
                    scheme: "ftp".into(),
                },
            ),
            (
                "mqtt://core1:1883",
                UnsupportedScheme {
                    scheme: "mqtt".into(),
                },
            ),
            ("http://user:pw@core1:8884", UserInfo),
            ("http://core1:8884?x=1", Query),
            ("http://core1:8884#top", Fragment),
            (
                "http://core1:8884/cluster",
                Path {
                    path: "/cluster".into(),
                },
            ),
            ("http://core1:8884//", Path { path: "/".into() }),
            ("http://", MissingHost),
            ("http://:8884", MissingHost),
            ("http://core1", MissingPort),
            ("http://core1/", MissingPort),
            ("http://core1:", MissingPort),
            ("http://core1:0", InvalidPort { port: "0".into() }),
            (
                "http://core1:65536",
                InvalidPort {
                    port: "65536".into(),
                },
            ),
            ("http://core1:+80", InvalidPort { port: "+80".into() }),
            (
                "http://core1:http",
                InvalidPort {
                    port: "http".into(),
                },
            ),
            ("http://::1:8884", InvalidHost { host: "::1".into() }),
            ("http://[::1]", MissingPort),
            ("http://[::1]8884", MissingPort),
            (
                "http://[nope]:8884",
                InvalidHost {
                    host: "nope".into(),
                },
            ),
            (
                "http://[fe80::1%eth0]:8884",
                InvalidHost {
                    host: "fe80::1%eth0".into(),
                },
            ),
            (
                "http://[::1:8884",
                InvalidHost {
                    host: "[::1:8884".into(),
                },
            ),
            (
                "http://999.1.1.1:8884",
                InvalidHost {
                    host: "999.1.1.1".into(),
                },
            ),
            (
                "http://core 1:8884",
                InvalidHost {
                    host: "core 1".into(),
                },
            ),
            (
                "http://-core:8884",
                InvalidHost {
                    host: "-core".into(),
                },
            ),
            (
                "http://a..b:8884",
                InvalidHost {
                    host: "a..b".into(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).as_ref(), Err(want), "{text}");
        }
    }

    #[test]
    fn serializes_as_its_display_string() {
        let u = parse("http://[::1]:8884").unwrap();
        assert_eq!(serde_json::to_string(&u).unwrap(), "\"http://[::1]:8884\"");
        let back: ClusterUrl = serde_json::from_str("\"http://[::1]:8884\"").unwrap();
        assert_eq!(back, u);
        assert!(serde_json::from_str::<ClusterUrl>("\"http://x\"").is_err());
    }

    #[test]
    fn bind_hosts_may_be_names_or_any_ip() {
        for ok in [
            "0.0.0.0",
            "::",
            "[::]",
            "::1",
            "localhost",
            "core_1.internal",
        ] {
            assert!(is_valid_host(ok), "{ok}");
        }
        for bad in ["", "a b", "1.2.3", "http://x", "[1.2.3.4]", "x:80"] {
            assert!(!is_valid_host(bad), "{bad}");
        }
    }
}
