//! `nubo`: every Nubo service and the operator CLI in one binary.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: the services allocate many small,
/// short-lived buffers (records, headers, rows) from many threads, where
/// glibc's arenas spend a tenth of a storage node's CPU
/// (`cargo bench --bench cluster_load`, README "S3 benchmarks").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "nubo",
    version,
    about = "Nubo: object storage, images and compute"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build and inspect the partition ring (devices, weights, rebalance, lookups).
    #[command(subcommand)]
    Ring(RingCli),
    /// Start a local cluster: storage nodes, the proxy (Swift and S3 on
    /// :8080), the image registry (:9292), the compute API (:8774), one
    /// compute agent and the identity service (:5000).
    Up(up::UpArgs),
    /// Operator views of a running cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Run a storage node (serves the ring's devices for its ip:port).
    StorageNode {
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Run a proxy (Swift API, TempAuth).
    Proxy {
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Upload, list, show, download and delete images; manage the registry's cache.
    Image(image_cli::ImageArgs),
    /// Run the image registry (Glance Image API v2, port 9292).
    Registry {
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Run the compute API (Nova API v2.1, port 8774).
    ComputeApi {
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Run a compute agent: the hypervisor side of one host.
    ComputeAgent {
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Run the identity service (Keystone API v3, port 5000).
    IdentityServer {
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Manage projects, users, roles, S3 credentials and token keys.
    Identity(identity_cli::IdentityArgs),
    /// Launch, list, show, read the console of and delete servers; manage
    /// SSH key pairs (`nubo server keypair ...`).
    Server(server_cli::ServerArgs),
}

mod identity_cli;
mod image_cli;
mod ring_push;
mod server_cli;
mod server_console;
mod service_client;
mod status;
mod up;

#[derive(Debug, Subcommand)]
enum RingCli {
    #[command(flatten)]
    Tools(ring_tools::cli::RingCommand),
    /// Copy a ring file to every storage node it names; each takes it only
    /// if it is newer and from the same cluster.
    Push { ring: std::path::PathBuf },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// One screen per cluster: nodes up, ring generation, replication age,
    /// quarantines, queued listing updates, disk usage.
    Status(status::StatusArgs),
}

/// A service worker thread's stack. Request futures nest deeply (a
/// versioned S3 write is a conditional write, then a copy, then a link,
/// each a future inside the one before), and one more level once overflowed
/// tokio's default of 2 MiB; the memory is reserved, not used, until a
/// request needs it.
const WORKER_STACK: usize = 8 << 20;

/// Loads and checks a service's config, then runs the service on a
/// multi-threaded runtime until it stops.
fn serve<C, Fut>(config: &std::path::Path, run: impl FnOnce(C) -> Fut) -> anyhow::Result<()>
where
    C: serde::de::DeserializeOwned + service_kit::config::Validate,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let config = service_kit::config::load(config)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK)
        .build()?
        .block_on(run(config))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NUBO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ring(RingCli::Tools(cmd)) => ring_tools::cli::run(cmd),
        Command::Ring(RingCli::Push { ring }) => ring_push::run(&ring),
        Command::Up(args) => up::run(args),
        Command::Cluster(ClusterCommand::Status(args)) => status::run(args),
        Command::StorageNode { config } => serve(&config, object_store::storage_node::run),
        Command::Proxy { config } => serve(&config, object_store::proxy::run),
        Command::Image(args) => image_cli::run(args),
        Command::Registry { config } => serve(&config, image_registry::service::run),
        Command::ComputeApi { config } => serve(&config, compute::api::run),
        Command::ComputeAgent { config } => serve(&config, compute::agent::run),
        Command::IdentityServer { config } => serve(&config, identity::run),
        Command::Identity(args) => identity_cli::run(args),
        Command::Server(args) => server_cli::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
