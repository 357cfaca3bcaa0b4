//! A stand-alone shim for cove-runtime's tests: `cove-test-shim shim <args...>` runs
//! [`cove_runtime::shim_main`], as `cove shim <args...>` does in the real binary.
//! Point `COVE_SHIM_EXE` at it.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("shim") {
        eprintln!("usage: cove-test-shim shim <args...>");
        std::process::exit(2);
    }
    std::process::exit(cove_runtime::shim_main(&args[2..]));
}
