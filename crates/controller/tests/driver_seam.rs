//! The controller reaches every network driver through `cove_drivers::NetworkDriver` and
//! never names one: what differs between drivers is a method of the driver, not a branch
//! here. This test greps the controller's sources to keep it so.

use std::path::Path;

/// Ways of naming the bridge driver (or any built-in one) in code.
const FORBIDDEN: &[&str] = &[
    "\"bridge\"",
    "\"host\"",
    "\"null\"",
    "bridge::",
    "BridgeOptions",
    "BridgeDriver",
    "DriverConfig::",
    "DriverKind",
    "HostDriver",
    "NullDriver",
];

#[test]
fn the_controller_never_names_a_driver() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut seen = 0;
    let mut found = vec![];
    for entry in std::fs::read_dir(&src).expect("controller sources") {
        let path = entry.expect("dir entry").path();
        // The fake kernel models the kernel's links (bridges, veths), not a driver.
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("fake.rs") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for f in FORBIDDEN {
                if code.contains(f) {
                    found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(seen > 10, "only {seen} source files found under {}", src.display());
    assert!(found.is_empty(), "the controller names a driver:\n{}", found.join("\n"));
}
