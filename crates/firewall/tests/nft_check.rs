//! Checks the rendered text against the real `nft` and kernel, inside throwaway network
//! namespaces (`unshare -n`), so the host's own ruleset is never touched.
//!
//! These tests need root and nft (scripts/setup.sh installs it). They fail, loudly, when
//! either is missing: a firewall that was never checked must not look checked.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

fn preflight() {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("Uid line in /proc/self/status");
    assert_eq!(
        euid, "0",
        "cove-firewall's nft tests must run as root: they load rulesets with nft in a throwaway \
         network namespace (unshare -n). Run `cargo test -p cove-firewall` as root."
    );
    for tool in ["nft", "unshare"] {
        let found = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(
            found,
            "`{tool}` is not installed: run scripts/setup.sh (Debian: nftables, util-linux)"
        );
    }
}

/// Runs `script` with `sh` in a new, empty network namespace; returns stdout, panics with
/// stderr on failure.
fn in_netns(what: &str, script: &str, args: &[&Path]) -> String {
    let out = Command::new("unshare")
        .args(["-n", "sh", "-ec", script, "sh"])
        .args(args)
        .output()
        .expect("spawn unshare");
    assert!(
        out.status.success(),
        "{what}: nft refused it:\n{}\n(script: {script})",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `nft list` output with every `elements = { ... }` list sorted and the blocks of each
/// table (chains, sets, maps, counters) in name order, so two listings of the same contents
/// compare equal whatever order the kernel keeps them in (a chain a delta creates is listed
/// after the others).
fn normalized(listing: &str) -> String {
    sorted_blocks(&sorted_elements(listing))
}

/// The listing with each table's top-level blocks (`\t<kind> <name> {` to `\t}`) sorted.
fn sorted_blocks(listing: &str) -> String {
    let mut out = String::new();
    let mut blocks: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in listing.lines() {
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
            if line == "\t}" {
                blocks.push(current.take().unwrap());
            }
        } else if line.starts_with('\t') && line.ends_with('{') && !line.starts_with("\t\t") {
            current = Some(format!("{line}\n"));
        } else if line.is_empty() {
            // Blank lines between blocks say nothing.
        } else {
            if line == "}" {
                blocks.sort();
                out.extend(blocks.drain(..));
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn sorted_elements(listing: &str) -> String {
    let mut out = String::new();
    let mut rest = listing;
    while let Some(start) = rest.find("elements = {") {
        let open = start + "elements = {".len();
        let close = open + rest[open..].find('}').expect("closing brace");
        let mut items: Vec<&str> = rest[open..close].split(',').map(str::trim).collect();
        items.sort_unstable();
        out.push_str(&rest[..open]);
        out.push_str(&items.join(", "));
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

#[test]
fn golden_files_pass_nft_check() {
    preflight();
    let dir = common::golden_dir();
    let mut n = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "nft") {
            in_netns(&path.display().to_string(), r#"nft -c -f "$1""#, &[&path]);
            n += 1;
        }
    }
    assert!(n >= 4, "expected the golden files in {}", dir.display());
}

#[test]
fn full_render_applies_twice_and_replaces_the_previous_version() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.nft"), tmp.path().join("b.nft"));
    fs::write(&a, cove_firewall::render(&common::full())).unwrap();
    fs::write(&b, cove_firewall::render(&common::one_network())).unwrap();
    // a, a again (idempotent), then b: the result is exactly b.
    let replaced = in_netns(
        "re-apply",
        r#"nft -f "$1"; nft -f "$1"; nft -f "$2"; nft list ruleset"#,
        &[&a, &b],
    );
    let fresh = in_netns("fresh", r#"nft -f "$1"; nft list ruleset"#, &[&b]);
    assert_eq!(normalized(&replaced), normalized(&fresh));
}

#[test]
fn deltas_pass_nft_check_and_reach_the_full_render() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    for (name, before, after) in common::delta_pairs() {
        let delta = cove_firewall::render_delta(&before, &after);
        if name == "unchanged" {
            assert_eq!(delta, "", "{name}");
            continue;
        }
        let full_before = tmp.path().join(format!("{name}.before.nft"));
        let full_after = tmp.path().join(format!("{name}.after.nft"));
        let delta_path = tmp.path().join(format!("{name}.delta.nft"));
        fs::write(&full_before, cove_firewall::render(&before)).unwrap();
        fs::write(&full_after, cove_firewall::render(&after)).unwrap();
        fs::write(&delta_path, &delta).unwrap();
        // `nft -c` needs the tables to exist: load the full "before" first.
        in_netns(
            &format!("delta {name} (nft -c)"),
            r#"nft -f "$1"; nft -c -f "$2""#,
            &[&full_before, &delta_path],
        );
        // Applied for real, the delta must leave exactly what the full "after" gives.
        let via_delta = in_netns(
            &format!("delta {name}"),
            r#"nft -f "$1"; nft -f "$2"; nft list ruleset"#,
            &[&full_before, &delta_path],
        );
        let via_full =
            in_netns(&format!("full {name}"), r#"nft -f "$1"; nft list ruleset"#, &[&full_after]);
        assert_eq!(normalized(&via_delta), normalized(&via_full), "delta {name}:\n{delta}");
        // ... and the comparison is not vacuous: the delta did change something.
        let untouched = in_netns(
            &format!("before {name}"),
            r#"nft -f "$1"; nft list ruleset"#,
            &[&full_before],
        );
        assert_ne!(normalized(&untouched), normalized(&via_delta), "delta {name} changed nothing");
    }
}

/// The daemon notices outside changes through `nft monitor`, which prints every object
/// Cove writes: nft 1.0.6's crashes printing some (a port range inside a concatenation),
/// and a dead monitor means an outside flush is never restored. Every golden ruleset and
/// every delta must leave a monitor running; the positive control is the services'
/// ruleset as it was with port ranges in concatenated interval maps, which kills it (so
/// the probe can see a crash).
#[test]
fn nft_monitor_survives_everything_cove_writes() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    // The monitor goes with the script whatever happens (an `nft` refusal ends it early
    // under `sh -e`): left behind, it would outlive the test in its namespace.
    let watched = r#"nft monitor > /dev/null 2>&1 & m=$!; trap 'kill $m 2>/dev/null || true' EXIT
        sleep 0.3; for f in "$@"; do nft -f "$f"; done; sleep 0.3
        if kill -0 $m 2>/dev/null; then echo alive; else echo dead; fi"#;
    let probe = |what: &str, files: &[&Path]| in_netns(what, watched, files).trim().to_string();
    let crash = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/monitor_crash.nft");
    assert_eq!(probe("control", &[&crash]), "dead", "the probe cannot see a monitor crash");
    for golden in ["full.nft", "services.nft", "services_empty.nft"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(golden);
        assert_eq!(probe(golden, &[&path]), "alive", "nft monitor died on {golden}");
    }
    for (name, before, after) in common::delta_pairs() {
        let delta = cove_firewall::render_delta(&before, &after);
        if delta.is_empty() {
            continue;
        }
        let b = tmp.path().join(format!("{name}.before.nft"));
        let d = tmp.path().join(format!("{name}.delta.nft"));
        fs::write(&b, cove_firewall::render(&before)).unwrap();
        fs::write(&d, &delta).unwrap();
        assert_eq!(probe(name, &[&b, &d]), "alive", "nft monitor died on delta {name}");
    }
}

#[test]
fn normalized_sorts_element_lists() {
    let a = "set s {\n\t\telements = { b, a,\n\t\t\t     c }\n\t}\n";
    let b = "set s {\n\t\telements = { c, b, a }\n\t}\n";
    assert_eq!(normalized(a), normalized(b));
}

#[test]
fn normalized_sorts_the_blocks_of_a_table() {
    let a = "table inet t {\n\tchain b {\n\t\tdrop\n\t}\n\n\tchain a {\n\t}\n}\n";
    let b = "table inet t {\n\tchain a {\n\t}\n\n\tchain b {\n\t\tdrop\n\t}\n}\n";
    assert_eq!(normalized(a), normalized(b));
    let c = "table inet t {\n\tchain a {\n\t}\n\n\tchain b {\n\t\taccept\n\t}\n}\n";
    assert_ne!(normalized(a), normalized(c));
}
