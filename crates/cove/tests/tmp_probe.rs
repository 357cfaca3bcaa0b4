mod common;
use common::host;
#[test]
fn probe() {
    let mut h = host("probe");
    h.cove(&["network", "create", "--subnet", "10.77.1.0/24", "rc-x"]).ok();
    common::tcp_server(&h, "srv", &["--network", "rc-x", "--ip", "10.77.1.10"], "alive");
    h.cove(&["run", "-d", "--name", "b", "busybox", "sleep", "60"]).ok();
    std::thread::sleep(std::time::Duration::from_secs(1));
    println!("BEFORE\n{}", h.sh_ok("ps -eo pid,ppid,stat,time,cmd | grep 'cove shim' | grep -v grep | cut -c1-60"));
    h.kill_daemon();
    std::thread::sleep(std::time::Duration::from_secs(3));
    println!("AFTER\n{}", h.sh_ok("ps -eo pid,ppid,stat,time,cmd | grep 'cove shim' | grep -v grep | cut -c1-60"));
    println!("{}", h.sh_ok("for p in $(pgrep -f 'cove shim'); do cat /proc/$p/stat | cut -d' ' -f3,14,15; ls -l /proc/$p/fd; done"));
    h.start_daemon(&[]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    println!("RESTARTED\n{}", h.sh_ok("ps -eo pid,ppid,stat,time,cmd | grep 'cove shim' | grep -v grep | cut -c1-60"));
}
