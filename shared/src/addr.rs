//! Where the enclave listens: `unix:<path>` (simulator, tests) or `vsock:<cid>:<port>`
//! (Nitro). One parser so host and enclave accept exactly the same spellings.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Unix(PathBuf),
    Vsock { cid: u32, port: u32 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid enclave address {input:?}: {reason} (expected unix:PATH or vsock:CID:PORT)")]
pub struct AddrError {
    input: String,
    reason: &'static str,
}

impl FromStr for Addr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| AddrError {
            input: s.to_string(),
            reason,
        };
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(err("empty path"));
            }
            return Ok(Addr::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("vsock:") {
            let (cid, port) = rest.split_once(':').ok_or_else(|| err("missing port"))?;
            let cid = cid.parse().map_err(|_| err("CID is not a number"))?;
            let port = port.parse().map_err(|_| err("port is not a number"))?;
            return Ok(Addr::Vsock { cid, port });
        }
        Err(err("unknown scheme"))
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
            Addr::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_schemes() {
        assert_eq!(
            "unix:/tmp/e.sock".parse::<Addr>().unwrap(),
            Addr::Unix("/tmp/e.sock".into())
        );
        assert_eq!(
            "vsock:16:5000".parse::<Addr>().unwrap(),
            Addr::Vsock { cid: 16, port: 5000 }
        );
        assert_eq!("vsock:16:5000".parse::<Addr>().unwrap().to_string(), "vsock:16:5000");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "unix:",
            "tcp:1.2.3.4:5",
            "vsock:16",
            "vsock:x:1",
            "vsock:1:99999999999",
        ] {
            assert!(bad.parse::<Addr>().is_err(), "{bad} should be refused");
        }
    }
}
