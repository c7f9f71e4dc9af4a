//! apus: the single binary of an OpenStack Swift-compatible object store.
//!
//! It owns the command line: `apus ring` (swift-ring-builder's semantics),
//! `apus nodes` (swift-get-nodes) and `apus serve` (a node's servers, or a
//! whole cluster in one process), and later the daemons.
//! Subcommands only parse arguments, call into the library crates and print;
//! the logic lives in those crates. Nothing depends on this crate.

mod local_cluster;
mod node_config;
mod nodes_cmd;
mod ring_cmd;
mod serve_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

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
    }
}
