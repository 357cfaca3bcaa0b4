//! A stand-in for `cove`, used only by the netlab's own tests.
//!
//! `netlab-fake-cove daemon -H unix://PATH --data-root D --exec-root D [--fail-start]`
//! serves a few routes over HTTP/1.1 on the unix socket:
//! `GET /_ping` (200 OK), `GET /ns` (this process's net and mnt namespace links),
//! `POST /echo` (the body back), `GET /chunked` (a chunked body), `POST /orphan` (leave a
//! reparented `sleep` behind, like a leaked shim), `POST /netns/NAME` (bind-mount a new
//! network namespace at `<exec-root>/netns/NAME` and leave a reparented `sleep` in it);
//! anything else is 404. Any other command line is a "client": it prints its arguments and
//! `COVE_HOST`, exits 3 for `fail`, copies stdin for `cat`.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Command;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut host = None;
    while let Some(i) = args.iter().position(|a| a == "-H") {
        args.remove(i);
        if i < args.len() {
            host = Some(args.remove(i));
        }
    }
    if args.first().map(String::as_str) == Some("daemon") {
        daemon(&args[1..], host);
    } else {
        client(&args);
    }
}

fn client(args: &[String]) {
    println!("args: {}", args.join(" "));
    println!("host: {}", std::env::var("COVE_HOST").unwrap_or_default());
    match args.first().map(String::as_str) {
        Some("fail") => {
            eprintln!("error: asked to fail");
            std::process::exit(3);
        }
        Some("cat") => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).expect("stdin");
            std::io::stdout().write_all(&buf).expect("stdout");
        }
        _ => {}
    }
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn daemon(args: &[String], host: Option<String>) {
    eprintln!("fake daemon: args {args:?}");
    if args.iter().any(|a| a == "--fail-start") {
        eprintln!("fake daemon: fatal: asked to fail at start");
        std::process::exit(1);
    }
    let host = host.expect("-H unix://PATH is required");
    let sock = host.strip_prefix("unix://").expect("-H must be unix://PATH").to_string();
    let exec_root = flag(args, "--exec-root").expect("--exec-root");
    for d in [flag(args, "--data-root").expect("--data-root"), exec_root.clone()] {
        std::fs::create_dir_all(&d).expect("state dirs");
    }
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).expect("bind");
    eprintln!("fake daemon: listening on {sock}");
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let exec_root = exec_root.clone();
        std::thread::spawn(move || serve(conn, &exec_root));
    }
}

fn serve(mut conn: UnixStream, exec_root: &str) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    let mut first = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, path) = (first.next().unwrap_or_default(), first.next().unwrap_or_default());
    eprintln!("fake daemon: {method} {path}");
    let (code, text) = match (method, path) {
        ("GET", "/_ping") => (200, "OK".to_string()),
        ("GET", "/ns") => {
            let l = |k: &str| std::fs::read_link(format!("/proc/self/ns/{k}")).unwrap_or_default();
            (200, format!("{} {}", l("net").display(), l("mnt").display()))
        }
        ("POST", "/echo") => (200, body),
        ("GET", "/chunked") => {
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                  6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
            );
            return;
        }
        ("POST", "/orphan") => sh("sleep 1000 >/dev/null 2>&1 &"),
        ("POST", p) if p.starts_with("/netns/") => {
            let name = &p["/netns/".len()..];
            let f = format!("{exec_root}/netns/{name}");
            sh(&format!(
                "set -e; mkdir -p {exec_root}/netns; touch {f}; unshare --net={f} true; \
                 nsenter --net={f} sleep 1000 >/dev/null 2>&1 &"
            ))
        }
        _ => (404, "{\"message\":\"page not found\"}".to_string()),
    };
    let reason = if code == 200 { "OK" } else { "Not Found" };
    let _ = write!(
        conn,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{text}",
        text.len()
    );
}

fn sh(script: &str) -> (u16, String) {
    match Command::new("sh").arg("-c").arg(script).status() {
        Ok(s) if s.success() => (200, "done".into()),
        Ok(s) => (500, format!("{script}: {s}")),
        Err(e) => (500, format!("{script}: {e}")),
    }
}
