//! Golden-file tests of `render`. Regenerate with `COVE_UPDATE_GOLDEN=1 cargo test -p
//! cove-firewall --test golden` and review the diff.

mod common;

use std::fs;

#[test]
fn render_matches_golden_files() {
    let update = std::env::var_os("COVE_UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let dir = common::golden_dir();
    let mut stale = Vec::new();
    for (name, model) in common::goldens() {
        let path = dir.join(format!("{name}.nft"));
        let text = cove_firewall::render(&model);
        assert!(model.problems().is_empty(), "{name}: {:?}", model.problems());
        if update {
            fs::write(&path, &text).unwrap();
            continue;
        }
        match fs::read_to_string(&path) {
            Ok(want) if want == text => {}
            Ok(_) => stale.push(format!("{} differs from render()", path.display())),
            Err(e) => stale.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nrun COVE_UPDATE_GOLDEN=1 cargo test -p cove-firewall --test golden and review the diff",
        stale.join("\n")
    );
}

/// The deltas of service changes (`common::service_delta_pairs`), as golden files in
/// `golden/deltas/`. The same update switch regenerates them.
#[test]
fn service_deltas_match_golden_files() {
    let update = std::env::var_os("COVE_UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let dir = common::golden_dir().join("deltas");
    fs::create_dir_all(&dir).unwrap();
    let mut stale = Vec::new();
    for (name, before, after) in common::service_delta_pairs() {
        assert!(after.problems().is_empty(), "{name}: {:?}", after.problems());
        let path = dir.join(format!("{name}.nft"));
        let text = cove_firewall::render_delta(&before, &after);
        assert!(!text.is_empty(), "{name}: no change");
        if update {
            fs::write(&path, &text).unwrap();
            continue;
        }
        match fs::read_to_string(&path) {
            Ok(want) if want == text => {}
            Ok(_) => stale.push(format!("{} differs from render_delta()", path.display())),
            Err(e) => stale.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nrun COVE_UPDATE_GOLDEN=1 cargo test -p cove-firewall --test golden and review the diff",
        stale.join("\n")
    );
}

#[test]
fn render_ignores_the_order_of_the_model() {
    let mut m = common::full();
    m.networks.reverse();
    m.endpoints.reverse();
    m.published.reverse();
    assert_eq!(cove_firewall::render(&m), cove_firewall::render(&common::full()));
}

#[test]
fn model_round_trips_through_json() {
    let m = common::full();
    let json = serde_json::to_string(&m).unwrap();
    assert!(json.contains("\"proto\":\"sctp\""), "{json}");
    let back: cove_firewall::FirewallModel = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
}
