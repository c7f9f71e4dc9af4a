//! apus: the single binary of an OpenStack Swift-compatible object store.
//!
//! It owns the command line: `apus ring` (swift-ring-builder's semantics),
//! `apus nodes` (swift-get-nodes), `apus serve` (a node's servers and
//! daemons, or a whole cluster in one process), one subcommand per
//! daemon (`apus object-replicator --once`), `apus bench` (a load tool
//! for any Swift or S3 endpoint), `apus dispersion populate|report`
//! (swift-dispersion-populate and -report) and `apus status` (every
//! storage server's health and recon figures).
//! Subcommands only parse arguments, call into the library crates and print;
//! the logic lives in those crates. Nothing depends on this crate.

mod bench_cmd;
mod daemon_cmd;
mod daemons;
mod dispersion_cmd;
mod images;
mod local_cluster;
mod node_config;
mod nodes_cmd;
mod progress;
mod ring_cmd;
mod serve_cmd;
mod status_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use daemons::DaemonName;

#[derive(Parser)]
#[command(
    name = "apus",
    version,
    about = "An OpenStack Swift-compatible object store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build and inspect rings, with swift-ring-builder's commands:
    /// `apus ring <builder_file> [create|add|set_weight|set_info|remove|
    /// rebalance|validate|write_ring|search|list_parts|
    /// pretend_min_part_hours_passed|set_min_part_hours|set_overload|set_replicas] ...`
    #[command(disable_help_flag = true)]
    Ring {
        /// The builder file (`object.builder`) or ring file, then the command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 1..)]
        args: Vec<String>,
    },
    /// Show where an account, container or object lives (swift-get-nodes).
    Nodes(nodes_cmd::NodesArgs),
    /// Run the proxy and storage servers: with no options, a whole cluster
    /// in one process over ./apus-data on 127.0.0.1:8080.
    Serve(serve_cmd::ServeArgs),
    /// Replicate this node's object partitions to their other primaries
    /// and hand off partitions it holds for others.
    ObjectReplicator(daemon_cmd::DaemonArgs),
    /// Rebuild missing erasure-coded fragments on their primaries and
    /// return fragments held on handoffs.
    ObjectReconstructor(daemon_cmd::DaemonArgs),
    /// Check every object's checksum and size; quarantine bad copies.
    ObjectAuditor(daemon_cmd::DaemonArgs),
    /// Replay container updates saved as async pendings.
    ObjectUpdater(daemon_cmd::DaemonArgs),
    /// Delete objects past their X-Delete-At, from the expiry queue.
    ObjectExpirer(daemon_cmd::DaemonArgs),
    /// Replicate container databases.
    ContainerReplicator(daemon_cmd::DaemonArgs),
    /// Check container databases; quarantine broken ones.
    ContainerAuditor(daemon_cmd::DaemonArgs),
    /// Report container stats to the account servers.
    ContainerUpdater(daemon_cmd::DaemonArgs),
    /// Move objects written under the wrong storage policy (after a
    /// split-brain container creation) into the container's policy.
    ContainerReconciler(daemon_cmd::DaemonArgs),
    /// Replicate account databases.
    AccountReplicator(daemon_cmd::DaemonArgs),
    /// Check account databases; quarantine broken ones.
    AccountAuditor(daemon_cmd::DaemonArgs),
    /// Load any Swift-API (apus, Swift, Ceph RGW) or S3 endpoint with a
    /// mix of requests; report rates and latencies; delete what it wrote.
    Bench(Box<bench_cmd::BenchArgs>),
    /// Place containers and objects on a share of the partitions
    /// (`populate`), then check that every copy of them is where the rings
    /// say (`report`): swift-dispersion-populate and -report.
    Dispersion(dispersion_cmd::DispersionArgs),
    /// Ask every storage server in the rings for its health and recon
    /// figures; problems first, exit code 1 if there are any.
    Status(status_cmd::StatusArgs),
}

/// jemalloc rather than glibc malloc: allocation is a large share of a
/// small request's CPU, and glibc's arenas and consolidation cost about a
/// fifth of it (measured in docs/performance.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Like other Unix tools, the printing commands end quietly when the
    // reader of their output goes away (`apus ring x.builder list_parts d1
    // | head`), instead of failing on every later print. A server keeps
    // SIGPIPE ignored: a client closing its socket must not end it.
    if !matches!(cli.command, Command::Serve(_)) {
        // SAFETY: resetting a signal to its default disposition at
        // start-up, before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli.command {
        Command::Ring { args } => ring_cmd::run(&args),
        Command::Nodes(args) => nodes_cmd::run(&args),
        Command::Serve(args) => serve_cmd::run(&args),
        Command::ObjectReplicator(a) => daemon_cmd::run(DaemonName::ObjectReplicator, &a),
        Command::ObjectReconstructor(a) => daemon_cmd::run(DaemonName::ObjectReconstructor, &a),
        Command::ObjectAuditor(a) => daemon_cmd::run(DaemonName::ObjectAuditor, &a),
        Command::ObjectUpdater(a) => daemon_cmd::run(DaemonName::ObjectUpdater, &a),
        Command::ObjectExpirer(a) => daemon_cmd::run(DaemonName::ObjectExpirer, &a),
        Command::ContainerReplicator(a) => daemon_cmd::run(DaemonName::ContainerReplicator, &a),
        Command::ContainerAuditor(a) => daemon_cmd::run(DaemonName::ContainerAuditor, &a),
        Command::ContainerUpdater(a) => daemon_cmd::run(DaemonName::ContainerUpdater, &a),
        Command::ContainerReconciler(a) => daemon_cmd::run(DaemonName::ContainerReconciler, &a),
        Command::AccountReplicator(a) => daemon_cmd::run(DaemonName::AccountReplicator, &a),
        Command::AccountAuditor(a) => daemon_cmd::run(DaemonName::AccountAuditor, &a),
        Command::Bench(args) => bench_cmd::run(&args),
        Command::Dispersion(args) => dispersion_cmd::run(&args),
        Command::Status(args) => status_cmd::run(&args),
    }
}
