//! `-p/--publish` and `--expose` parsing, following docker's `nat.ParsePortSpec`.

use std::net::IpAddr;

use cove_model::{PortSpec, Proto};

/// One published container port and its host binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// `"80/tcp"`: the model's [`PortSpec`] as text, the key the API parses back with it.
    pub port: String,
    /// Host address, `""` for all.
    pub host_ip: String,
    /// Host port, `""` for an ephemeral port, or `"8000-8010"` for a dynamic range.
    pub host_port: String,
}

fn split_proto(raw: &str) -> (String, String) {
    let mut parts = raw.split('/');
    let port = parts.next().unwrap_or("").to_string();
    match parts.next() {
        Some(p) if !p.is_empty() => (port, p.to_lowercase()),
        _ => (port, "tcp".into()),
    }
}

fn parse_range(s: &str, what: &str) -> Result<(u16, u16), String> {
    let one = |p: &str| -> Result<u16, String> {
        let n: u64 = p.parse().map_err(|_| format!("invalid {what}: {s}"))?;
        if n == 0 || n > 65535 {
            return Err(format!("invalid {what}: {s} (ports must be between 1 and 65535)"));
        }
        Ok(n as u16)
    };
    let (start, end) = match s.split_once('-') {
        Some((a, b)) => (one(a)?, one(b)?),
        None => {
            let p = one(s)?;
            (p, p)
        }
    };
    if start > end {
        return Err(format!("invalid {what}: {s} (range start is greater than its end)"));
    }
    Ok((start, end))
}

/// The protocol of a port spec, by the model's parser (the one the API uses too).
fn parse_proto(proto: &str) -> Result<Proto, String> {
    proto.parse().map_err(|e: cove_model::ParseProtoError| e.to_string())
}

/// Parse one `-p` value: `80`, `8080:80`, `ip:8080:80`, `ip::80`, `[v6]:8080:80`,
/// `8080:80/udp`, `8000-8010:8000-8010`, `8000-8010:80`.
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let n = parts.len();
    let (mut ip, host, container) = match n {
        1 => (String::new(), "", parts[0]),
        2 => (String::new(), parts[0], parts[1]),
        3 => (parts[0].to_string(), parts[1], parts[2]),
        _ => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
    };
    let (container, proto) = split_proto(container);
    if let Some(inner) = ip.strip_prefix('[') {
        ip =
            inner.strip_suffix(']').ok_or_else(|| format!("invalid IP address: {ip}"))?.to_string();
    }
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        return Err(format!("invalid IP address: {ip}"));
    }
    if container.is_empty() {
        return Err(format!("no port specified: {spec}<empty>"));
    }
    let (start, end) = parse_range(&container, "containerPort")?;
    let host_range = if host.is_empty() { None } else { Some(parse_range(host, "hostPort")?) };
    if let Some((hs, he)) = host_range {
        if end - start != he - hs && start != end {
            return Err(format!(
                "invalid ranges specified for container and host Ports: {container} and {host}"
            ));
        }
    }
    let proto = parse_proto(&proto)?;
    let mut out = Vec::new();
    for i in 0..=(end - start) {
        let host_port = match host_range {
            None => String::new(),
            Some((hs, he)) if start == end && hs != he => format!("{hs}-{he}"),
            Some((hs, _)) => (hs + i).to_string(),
        };
        out.push(PortMapping {
            port: PortSpec { port: start + i, proto }.to_string(),
            host_ip: ip.clone(),
            host_port,
        });
    }
    Ok(out)
}

/// Parse one `--expose` value: `80`, `80/udp`, `8000-8010[/proto]`.
pub fn parse_expose(spec: &str) -> Result<Vec<String>, String> {
    if spec.contains(':') {
        return Err(format!("invalid port format for --expose: {spec}"));
    }
    let (port, proto) = split_proto(spec);
    let (start, end) = parse_range(&port, "port")
        .map_err(|e| format!("invalid range format for --expose: {spec}, error: {e}"))?;
    let proto = parse_proto(&proto)?;
    Ok((start..=end).map(|port| PortSpec { port, proto }.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(port: &str, ip: &str, host: &str) -> PortMapping {
        PortMapping { port: port.into(), host_ip: ip.into(), host_port: host.into() }
    }

    #[test]
    fn simple_forms() {
        assert_eq!(parse_publish("80").unwrap(), [m("80/tcp", "", "")]);
        assert_eq!(parse_publish("8080:80").unwrap(), [m("80/tcp", "", "8080")]);
        assert_eq!(parse_publish("127.0.0.1:8080:80").unwrap(), [m("80/tcp", "127.0.0.1", "8080")]);
        assert_eq!(parse_publish("127.0.0.1::80").unwrap(), [m("80/tcp", "127.0.0.1", "")]);
        assert_eq!(parse_publish("[::1]:8080:80").unwrap(), [m("80/tcp", "::1", "8080")]);
        assert_eq!(parse_publish("[::]::53/udp").unwrap(), [m("53/udp", "::", "")]);
        assert_eq!(parse_publish("8080:80/udp").unwrap(), [m("80/udp", "", "8080")]);
        assert_eq!(parse_publish("8080:80/SCTP").unwrap(), [m("80/sctp", "", "8080")]);
        assert_eq!(parse_publish("8080:80/").unwrap(), [m("80/tcp", "", "8080")]);
    }

    #[test]
    fn ranges() {
        let r = parse_publish("8000-8002:9000-9002").unwrap();
        assert_eq!(
            r,
            [m("9000/tcp", "", "8000"), m("9001/tcp", "", "8001"), m("9002/tcp", "", "8002")]
        );
        assert_eq!(parse_publish("8000-8010:80").unwrap(), [m("80/tcp", "", "8000-8010")]);
        assert_eq!(
            parse_publish("7000-7001").unwrap(),
            [m("7000/tcp", "", ""), m("7001/tcp", "", "")]
        );
    }

    #[test]
    fn errors() {
        let err = |s: &str| parse_publish(s).unwrap_err();
        assert!(err("0:80").contains("hostPort"));
        assert!(err("8080:0").contains("containerPort"));
        assert!(err("70000:80").contains("between 1 and 65535"));
        assert!(err("8080:abc").contains("invalid containerPort"));
        assert!(err("8010-8000:80").contains("greater"));
        assert!(err("8000-8001:80-82").contains("invalid ranges"));
        assert!(err("8080:80/icmp").contains("invalid proto"));
        assert!(err("1.2.3.999:8080:80").contains("invalid IP address"));
        assert!(err("8080:").contains("no port specified"));
        assert!(err("[::1:8080:80").contains("invalid IP address"));
    }

    #[test]
    fn expose() {
        assert_eq!(parse_expose("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_expose("53/udp").unwrap(), ["53/udp"]);
        assert_eq!(parse_expose("8000-8001").unwrap(), ["8000/tcp", "8001/tcp"]);
        assert!(parse_expose("80:80").is_err());
        assert!(parse_expose("x").is_err());
    }
}
