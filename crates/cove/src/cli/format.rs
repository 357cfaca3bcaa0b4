//! Output formatting shared by the commands: docker's table layout (Go's `tabwriter` with
//! minwidth 10, padding 3), `--format` handling, JSON indentation like Go's `json.Indent`,
//! human-readable durations and sizes, natural sort, and the `PORTS` column.

use super::template::Template;
use super::value::Val;
use super::Plain;
use std::cmp::Ordering;

/// Lay out tab-separated cells like Go's `tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)`.
pub fn tabwrite(text: &str) -> String {
    let mut lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    // A trailing newline leaves an empty last "line" that must not be printed.
    let trailing_newline = text.ends_with('\n');
    if trailing_newline {
        lines.pop();
    }
    let mut out = String::new();
    let mut widths = Vec::new();
    format_block(&lines, 0, lines.len(), &mut widths, &mut out);
    if !trailing_newline && out.ends_with('\n') {
        out.pop();
    }
    out
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut w = 10;
        while this < line1 && column + 1 < lines[this].len() {
            w = w.max(width(lines[this][column]) + 3);
            this += 1;
        }
        widths.push(w);
        format_block(lines, line0, this, widths, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < line.len() {
                if let Some(w) = widths.get(j) {
                    out.extend(std::iter::repeat_n(' ', w.saturating_sub(width(cell))));
                }
            }
        }
        out.push('\n');
    }
}

/// Render list rows with a docker `--format` value (`table ...`, `json`, a template, or
/// empty for `default`). `headers` maps each field to its column title.
pub fn render_list(
    format: &str,
    default: &str,
    rows: &[Val],
    headers: &Val,
) -> anyhow::Result<String> {
    let format = match format.trim() {
        "" | "table" => default,
        "json" => "{{json .}}",
        f => f,
    };
    let (table, body) = match format.strip_prefix("table") {
        Some(rest) => (true, rest),
        None => (false, format),
    };
    let body = body.trim_matches(' ').replace("\\t", "\t").replace("\\n", "\n");
    let tmpl = Template::parse(&body).map_err(parse_error)?;
    let mut out = String::new();
    if table {
        out.push_str(&tmpl.execute_header(headers).map_err(exec_error)?);
        out.push('\n');
    }
    for row in rows {
        out.push_str(&tmpl.execute_row(row).map_err(exec_error)?);
        out.push('\n');
    }
    Ok(if table { tabwrite(&out) } else { out })
}

/// Apply a user `--format` template to one inspected object.
pub fn render_one(format: &str, value: &Val) -> anyhow::Result<String> {
    let format = if format.trim() == "json" { "{{json .}}" } else { format };
    let body = format.replace("\\t", "\t").replace("\\n", "\n");
    let tmpl = Template::parse(&body).map_err(parse_error)?;
    Ok(tmpl.execute(value).map_err(exec_error)?)
}

fn parse_error(e: String) -> Plain {
    Plain(format!("template parsing error: template: :1: {e}"))
}

fn exec_error(e: String) -> Plain {
    Plain(format!("template parsing error: template: :1: executing \"\": {e}"))
}

/// Re-indent raw JSON like Go's `json.Indent(dst, src, "", "    ")`, keeping key order.
pub fn indent_json(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len() * 2);
    let mut depth = 0usize;
    let (mut in_str, mut escaped, mut need_indent) = (false, false, false);
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', depth * 4));
    };
    for &c in raw {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        if c.is_ascii_whitespace() {
            continue;
        }
        if need_indent && c != b']' && c != b'}' {
            need_indent = false;
            depth += 1;
            newline(&mut out, depth);
        }
        match c {
            b'"' => {
                in_str = true;
                out.push(c);
            }
            b'{' | b'[' => {
                out.push(c);
                need_indent = true;
            }
            b',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            b'}' | b']' => {
                if need_indent {
                    need_indent = false; // empty object or array
                } else {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// go-units `HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let seconds = secs;
    let minutes = secs / 60;
    let hours = (secs as f64 / 3600.0 + 0.5) as i64;
    if seconds < 1 {
        "Less than a second".into()
    } else if seconds == 1 {
        "1 second".into()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", secs / 3600 / 24 / 365)
    }
}

/// "N units ago" for a unix timestamp.
pub fn since(unix: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    format!("{} ago", human_duration(now - unix))
}

/// go-units `HumanSizeWithPrecision(size, 3)` (decimal units).
pub fn human_size(size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = size;
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    let digits = if size >= 100.0 {
        0
    } else if size >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{size:.digits$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[i])
}

/// `sortorder.NaturalLess`: digit runs compare as numbers.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let (si, sj) = (i, j);
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let na = std::str::from_utf8(&a[si..i]).unwrap_or("").trim_start_matches('0');
            let nb = std::str::from_utf8(&b[sj..j]).unwrap_or("").trim_start_matches('0');
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

/// Go's `time.Time.String()` for an RFC 3339 timestamp from the daemon.
pub fn go_time_string(rfc3339: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(rfc3339) else {
        return rfc3339.to_string();
    };
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos > 0 {
        s.push_str(format!(".{nanos:09}").trim_end_matches('0'));
    }
    let offset = t.format("%z").to_string();
    let zone = if t.offset().local_minus_utc() == 0 { "UTC".to_string() } else { offset.clone() };
    format!("{s} {offset} {zone}")
}

/// Go's `time.Unix(secs, 0).String()` in UTC.
pub fn unix_time_string(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
        .unwrap_or_default()
}

/// Truncate to `max` characters with a trailing `…`, like docker's `Ellipsis`.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Strip a `sha256:` prefix and keep 12 characters.
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One entry of a container list's `Ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortEntry {
    pub ip: String,
    pub private: u16,
    pub public: u16,
    pub proto: String,
}

impl PortEntry {
    pub fn from_val(v: &Val) -> PortEntry {
        let num = |k: &str| v.get(k).and_then(Val::as_i64).unwrap_or(0) as u16;
        PortEntry {
            ip: v.get("IP").and_then(Val::as_str).unwrap_or("").to_string(),
            private: num("PrivatePort"),
            public: num("PublicPort"),
            proto: v.get("Type").and_then(Val::as_str).unwrap_or("tcp").to_string(),
        }
    }
}

fn join_host_port(ip: &str, port: impl std::fmt::Display) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// docker's `DisplayablePorts`: "0.0.0.0:8080->80/tcp, 443/tcp", grouping consecutive ports.
pub fn display_ports(ports: &[PortEntry]) -> String {
    let mut ports = ports.to_vec();
    ports.sort_by(|a, b| {
        (a.private, &a.ip, a.public, &a.proto).cmp(&(b.private, &b.ip, b.public, &b.proto))
    });
    let mut groups: Vec<(String, u16, u16)> = Vec::new(); // key, first, last (open groups)
    let mut result = Vec::new();
    let mut host_mappings = Vec::new();
    let form = |key: &str, first: u16, last: u16| {
        let (ip, proto) = match key.rsplit_once('/') {
            Some((ip, proto)) => (ip, proto),
            None => ("", key),
        };
        let mut group = first.to_string();
        if first != last {
            group = format!("{group}-{last}");
        }
        if !ip.is_empty() {
            group = format!("{ip}:{group}->{group}");
        }
        format!("{group}/{proto}")
    };
    for p in &ports {
        let mut key = p.proto.clone();
        if !p.ip.is_empty() {
            if p.public != p.private {
                host_mappings.push(format!(
                    "{}->{}/{}",
                    join_host_port(&p.ip, p.public),
                    p.private,
                    p.proto
                ));
                continue;
            }
            key = format!("{}/{}", p.ip, p.proto);
        }
        match groups.iter_mut().find(|g| g.0 == key) {
            None => groups.push((key, p.private, p.private)),
            Some(g) if p.private == g.2.wrapping_add(1) => g.2 = p.private,
            Some(g) => {
                result.push(form(&g.0, g.1, g.2));
                (g.1, g.2) = (p.private, p.private);
            }
        }
    }
    result.extend(groups.iter().map(|g| form(&g.0, g.1, g.2)));
    result.extend(host_mappings);
    result.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwriter_matches_docker_network_ls() {
        let text = "NETWORK ID\tNAME\tDRIVER\tSCOPE\n0123456789ab\tbridge\tbridge\tlocal\nabcdefabcdef\tmy-long-network\tbridge\tlocal\n";
        let expected = "NETWORK ID     NAME              DRIVER    SCOPE\n\
                        0123456789ab   bridge            bridge    local\n\
                        abcdefabcdef   my-long-network   bridge    local\n";
        assert_eq!(tabwrite(text), expected);
    }

    #[test]
    fn tabwriter_empty_cells_and_single_lines() {
        assert_eq!(tabwrite("A\tB\n\tx\n"), "A         B\n          x\n");
        assert_eq!(tabwrite("plain\n"), "plain\n");
        assert_eq!(tabwrite("a\tb"), "a         b");
    }

    #[test]
    fn render_table_and_plain() {
        let rows = vec![
            Val::obj([("ID", Val::str("0123456789ab")), ("Name", Val::str("bridge"))]),
            Val::obj([("ID", Val::str("ba9876543210")), ("Name", Val::str("n1"))]),
        ];
        let headers = Val::obj([("ID", Val::str("NETWORK ID")), ("Name", Val::str("NAME"))]);
        let out = render_list("", "table {{.ID}}\t{{.Name}}", &rows, &headers).unwrap();
        assert_eq!(out, "NETWORK ID     NAME\n0123456789ab   bridge\nba9876543210   n1\n");
        let out = render_list("{{.Name}}", "", &rows, &headers).unwrap();
        assert_eq!(out, "bridge\nn1\n");
        let out = render_list("table {{.Name}}\\t{{.ID}}", "", &rows, &headers).unwrap();
        assert_eq!(out, "NAME      NETWORK ID\nbridge    0123456789ab\nn1        ba9876543210\n");
        let out = render_list("json", "", &rows[..1], &headers).unwrap();
        assert_eq!(out, "{\"ID\":\"0123456789ab\",\"Name\":\"bridge\"}\n");
        assert!(render_list("{{.Name", "", &rows, &headers).is_err());
    }

    #[test]
    fn indent_like_go() {
        let raw = br#"[{"Name":"a b","Empty":{},"List":[],"IPAM":{"Config":[{"Subnet":"10.0.0.0/24"}]},"S":"x\"{,"}]"#;
        let expected = r#"[
    {
        "Name": "a b",
        "Empty": {},
        "List": [],
        "IPAM": {
            "Config": [
                {
                    "Subnet": "10.0.0.0/24"
                }
            ]
        },
        "S": "x\"{,"
    }
]"#;
        assert_eq!(indent_json(raw), expected);
        assert_eq!(indent_json(b"[]"), "[]");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_size(123.0), "123B");
        assert_eq!(human_size(1_234_567.0), "1.23MB");
        assert_eq!(human_size(4_260.0), "4.26kB");
        assert_eq!(human_size(12_300_000.0), "12.3MB");
        assert_eq!(human_size(1_000_000.0), "1MB");
    }

    #[test]
    fn natural_sort_and_misc() {
        let mut v = vec!["net10", "net2", "bridge", "net1"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["bridge", "net1", "net2", "net10"]);
        assert_eq!(ellipsis("sh -c 'sleep 1000; echo done'", 20), "sh -c 'sleep 1000; …");
        assert_eq!(go_quote("sh -c \"x\""), r#""sh -c \"x\"""#);
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(go_time_string("2024-01-02T03:04:05.5Z"), "2024-01-02 03:04:05.5 +0000 UTC");
        assert_eq!(unix_time_string(0), "1970-01-01 00:00:00 +0000 UTC");
    }

    #[test]
    fn ports_column() {
        let p = |ip: &str, private, public, proto: &str| PortEntry {
            ip: ip.into(),
            private,
            public,
            proto: proto.into(),
        };
        assert_eq!(display_ports(&[p("0.0.0.0", 80, 8080, "tcp")]), "0.0.0.0:8080->80/tcp");
        assert_eq!(display_ports(&[p("::", 80, 8080, "tcp")]), "[::]:8080->80/tcp");
        assert_eq!(display_ports(&[p("", 443, 0, "tcp")]), "443/tcp");
        let range: Vec<_> = (8000..=8002).map(|n| p("0.0.0.0", n, n, "tcp")).collect();
        assert_eq!(display_ports(&range), "0.0.0.0:8000-8002->8000-8002/tcp");
        assert_eq!(
            display_ports(&[
                p("", 53, 0, "udp"),
                p("0.0.0.0", 80, 8080, "tcp"),
                p("", 22, 0, "tcp")
            ]),
            "22/tcp, 53/udp, 0.0.0.0:8080->80/tcp"
        );
    }
}
