//! Transport protocols and port keys, parsed once where they enter Cove (the API's request
//! decoding, the CLI's `-p`/`--expose`) and typed everywhere after.

use serde::{Deserialize, Serialize};

/// A transport protocol a port can be exposed or published for. Stored and shown as
/// Docker spells it: `"tcp"`, `"udp"`, `"sctp"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Proto {
    /// The protocol's name, as Docker and nft spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    /// The IANA protocol number (`IPPROTO_*`): tcp 6, udp 17, sctp 132.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol name that is not tcp, udp or sctp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseProtoError(pub String);

impl std::fmt::Display for ParseProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Docker's `invalid proto: X`, with what would have been accepted.
        write!(f, "invalid proto: {} (expected tcp, udp or sctp)", self.0)
    }
}

impl std::error::Error for ParseProtoError {}

impl std::str::FromStr for Proto {
    type Err = ParseProtoError;

    /// `tcp`, `udp` or `sctp`, in any case (Docker lowercases them).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "sctp" => Ok(Proto::Sctp),
            _ => Err(ParseProtoError(s.to_owned())),
        }
    }
}

/// A container port and its protocol: Docker's port key (`80/tcp`, `53/udp`; `80` means
/// tcp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSpec {
    /// The port, 1 to 65535.
    pub port: u16,
    /// Its protocol.
    pub proto: Proto,
}

/// Why a port key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsePortSpecError {
    /// The protocol is not tcp, udp or sctp.
    Proto(ParseProtoError),
    /// A range (`8000-8010/tcp`): clients expand those.
    Range,
    /// Not a number between 1 and 65535.
    Port,
}

impl std::fmt::Display for ParsePortSpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParsePortSpecError::Proto(e) => e.fmt(f),
            ParsePortSpecError::Range => f.write_str("port ranges must be expanded by the client"),
            ParsePortSpecError::Port => f.write_str("not a port number between 1 and 65535"),
        }
    }
}

impl std::error::Error for ParsePortSpecError {}

impl std::str::FromStr for PortSpec {
    type Err = ParsePortSpecError;

    /// `80/tcp`, `53/UDP`, `80` (tcp). One port, not a range.
    fn from_str(key: &str) -> Result<Self, Self::Err> {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let proto = proto.parse().map_err(ParsePortSpecError::Proto)?;
        if port.contains('-') {
            return Err(ParsePortSpecError::Range);
        }
        match port.parse::<u16>() {
            Ok(port) if port > 0 => Ok(PortSpec { port, proto }),
            _ => Err(ParsePortSpecError::Port),
        }
    }
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.port, self.proto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_parse_in_any_case_and_print_lowercase() {
        for (text, p, n) in
            [("tcp", Proto::Tcp, 6), ("UDP", Proto::Udp, 17), ("Sctp", Proto::Sctp, 132)]
        {
            let got: Proto = text.parse().unwrap();
            assert_eq!(got, p);
            assert_eq!(got.number(), n);
            assert_eq!(got.to_string(), text.to_ascii_lowercase());
        }
        let e = "icmp".parse::<Proto>().unwrap_err();
        assert_eq!(e.to_string(), "invalid proto: icmp (expected tcp, udp or sctp)");
        assert!("".parse::<Proto>().is_err());
    }

    #[test]
    fn protocols_are_stored_as_docker_spells_them() {
        assert_eq!(serde_json::to_string(&Proto::Sctp).unwrap(), "\"sctp\"");
        assert_eq!(serde_json::from_str::<Proto>("\"udp\"").unwrap(), Proto::Udp);
        assert!(serde_json::from_str::<Proto>("\"icmp\"").is_err());
    }

    #[test]
    fn port_keys() {
        let spec = |port, proto| PortSpec { port, proto };
        assert_eq!("80".parse(), Ok(spec(80, Proto::Tcp)));
        assert_eq!("53/UDP".parse(), Ok(spec(53, Proto::Udp)));
        assert_eq!("9/sctp".parse(), Ok(spec(9, Proto::Sctp)));
        assert_eq!(spec(53, Proto::Udp).to_string(), "53/udp");
        assert_eq!("80-81/tcp".parse::<PortSpec>(), Err(ParsePortSpecError::Range));
        assert_eq!("0/tcp".parse::<PortSpec>(), Err(ParsePortSpecError::Port));
        assert_eq!("http".parse::<PortSpec>(), Err(ParsePortSpecError::Port));
        assert!(matches!("80/icmp".parse::<PortSpec>(), Err(ParsePortSpecError::Proto(_))));
    }
}
