//! apus: the single binary of an OpenStack Swift-compatible object store.
//!
//! It owns the command line: `apus ring` (swift-ring-builder's semantics),
//! `apus nodes` (swift-get-nodes), and later `apus serve` and the daemons.
//! Subcommands only parse arguments, call into the library crates and print;
//! the logic lives in those crates. Nothing depends on this crate.

mod nodes_cmd;
mod ring_cmd;

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
}

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of our output goes
    // away (`apus ring x.builder list_parts d1 | head`), instead of failing
    // on every later print.
    // SAFETY: resetting a signal to its default disposition at start-up,
    // before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Ring { args } => ring_cmd::run(&args),
        Command::Nodes(args) => nodes_cmd::run(&args),
    }
}
