//! `cove`: the container networking daemon and its command-line client, one binary.

mod cli;
mod cluster;
mod daemon;

use clap::{Parser, Subcommand};

/// Cove: container networking for Linux.
#[derive(Debug, Parser)]
#[command(name = "cove", version, about, propagate_version = true)]
struct Cove {
    /// Daemon socket to connect to (default: $COVE_HOST, $DOCKER_HOST, unix:///run/cove/cove.sock)
    #[arg(short = 'H', long = "host", value_name = "unix:///PATH")]
    host: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Cove daemon
    Daemon(Box<daemon::DaemonArgs>),
    /// Container shim (internal)
    #[command(hide = true)]
    Shim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    #[command(flatten)]
    Cli(Box<cli::Command>),
}

/// glibc gives every thread that allocates its own arena (up to 8 per core), and the
/// daemon's allocations move between tokio workers and the blocking pool that runs runc:
/// at 1,000 containers the daemon held 9 MiB more with the default than with one arena.
/// Two keep the workers from contending on one lock.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() {
    let cove = Cove::parse();
    match cove.command {
        Command::Daemon(args) => {
            limit_malloc_arenas();
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
            let result = match runtime {
                Ok(rt) => rt.block_on(daemon::run(*args)),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = result {
                eprintln!("cove daemon: {e:#}");
                std::process::exit(1);
            }
        }
        Command::Shim { args } => std::process::exit(cove_runtime::shim_main(&args)),
        Command::Cli(cmd) => {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("Error: cannot start the runtime: {e}");
                    std::process::exit(1);
                }
            };
            let host = cli::resolve_host(cove.host);
            let code = runtime.block_on(cli::run(host, *cmd));
            // Exit without dropping the runtime: a pending stdin read must not block exit.
            std::process::exit(code);
        }
    }
}
