//! The test image: a root filesystem tar built from Debian's static busybox.

use std::process::Command;
use std::sync::OnceLock;

/// Where Debian's `busybox-static` installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Applets the image always links, whether or not `busybox --list` names them.
const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "sleep", "hostname", "ip", "ifconfig", "route", "nc", "wget",
    "ping", "grep", "sed", "awk", "head", "tail", "true", "false", "id", "env", "printf", "touch",
    "mkdir", "rm", "kill", "ps", "nslookup", "cut", "wc", "seq", "timeout",
];

/// The rootfs tar of the test image (built once per process, then reused): `bin/busybox`,
/// a `bin/<applet> -> busybox` symlink for every applet, `sbin`, `usr/bin`, `usr/sbin` as
/// symlinks to `bin`, `etc/passwd`, `etc/group`, `etc/hosts`, and empty `tmp` (1777),
/// `proc`, `sys`, `dev`, `root`, `run`, `var`. Panics when `/bin/busybox` is missing or not
/// statically linked ("install busybox-static").
pub fn busybox_rootfs_tar() -> &'static [u8] {
    static TAR: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    match TAR.get_or_init(build) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

fn build() -> Result<Vec<u8>, String> {
    let bin = std::fs::read(BUSYBOX).map_err(|e| {
        format!("netlab: cannot read {BUSYBOX} ({e}); install busybox-static (apt-get install busybox-static)")
    })?;
    if !is_static_elf(&bin) {
        return Err(format!(
            "netlab: {BUSYBOX} is not a statically linked ELF; install busybox-static \
             (Debian's `busybox` package is dynamic and cannot run inside the image)"
        ));
    }
    let mut applets: Vec<String> = APPLETS.iter().map(|s| s.to_string()).collect();
    if let Ok(out) = Command::new(BUSYBOX).arg("--list").output() {
        applets.extend(String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_string()));
    }
    applets.retain(|a| !a.is_empty() && a != "busybox" && !a.contains('/'));
    applets.sort();
    applets.dedup();

    let mut b = tar::Builder::new(Vec::new());
    let err = |e: std::io::Error| format!("netlab: building the busybox tar: {e}");
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("run", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("var", 0o755),
        ("var/tmp", 0o1777),
    ] {
        append(&mut b, dir, tar::EntryType::Directory, mode, &[], None).map_err(err)?;
    }
    for (link, target) in [("sbin", "bin"), ("usr/bin", "../bin"), ("usr/sbin", "../bin")] {
        append(&mut b, link, tar::EntryType::Symlink, 0o777, &[], Some(target)).map_err(err)?;
    }
    append(&mut b, "bin/busybox", tar::EntryType::Regular, 0o755, &bin, None).map_err(err)?;
    for a in &applets {
        let path = format!("bin/{a}");
        append(&mut b, &path, tar::EntryType::Symlink, 0o777, &[], Some("busybox")).map_err(err)?;
    }
    let files: [(&str, &str); 3] = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
    ];
    for (path, text) in files {
        append(&mut b, path, tar::EntryType::Regular, 0o644, text.as_bytes(), None).map_err(err)?;
    }
    b.into_inner().map_err(err)
}

fn append(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    data: &[u8],
    link: Option<&str>,
) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    match link {
        Some(target) => b.append_link(&mut h, path, target),
        None => b.append_data(&mut h, path, data),
    }
}

/// Whether `elf` is an ELF executable without a program interpreter (statically linked).
fn is_static_elf(elf: &[u8]) -> bool {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false; // only 64-bit little-endian is expected here
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap_or_default()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        match elf.get(o..o + 4) {
            Some(t) => u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != 3, // PT_INTERP
            None => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_dynamic_elf() {
        // This test binary is dynamically linked (glibc) in the default target.
        let me = std::fs::read("/proc/self/exe").unwrap();
        assert!(!is_static_elf(&me));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }
}
