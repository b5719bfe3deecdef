//! Running this test or benchmark binary again inside a network namespace
//! of its own, cluster and all, so that bridges, taps, dnsmasq and guest
//! packets never touch the machine's own namespace (tests/guest_network.rs,
//! benches/guest_ready.rs). Needs root.

use std::process::Command;

/// Set in the rerun's environment.
const INSIDE: &str = "NUBO_OWN_NAMESPACE_INSIDE";

/// Whether this process is the rerun inside the namespace.
pub fn inside() -> bool {
    std::env::var_os(INSIDE).is_some()
}

/// A namespace, and everything left running in it, removed on drop.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        // dnsmasq forks away from the agent: end whatever still runs here.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Runs this executable again with `args` in a new namespace (`<tag>-<pid>`,
/// loopback up); whether the rerun succeeded. The namespace goes after.
pub fn rerun_inside(tag: &str, args: &[String]) -> bool {
    let ns = Namespace(format!("{tag}-{}", std::process::id()));
    super::run_ok(Command::new("ip").args(["netns", "add", &ns.0]));
    super::run_ok(Command::new("ip").args(["-n", &ns.0, "link", "set", "lo", "up"]));
    Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(std::env::current_exe().expect("the running executable"))
        .args(args)
        .env(INSIDE, "1")
        .status()
        .expect("ip netns exec")
        .success()
}
