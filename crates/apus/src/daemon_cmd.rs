//! `apus <daemon> [--once]`: one background daemon of a storage node on its
//! own, for operators and tests (`apus object-replicator --config node.toml
//! --once`). With `--once` it makes one pass, prints the pass's stats as
//! one JSON line and exits 0 when the pass completed; without, it runs
//! passes until SIGINT or SIGTERM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use apus_daemons::{LocalIdentity, Shutdown};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;

use crate::daemons::{DaemonName, Daemons};
use crate::node_config::Layout;
use crate::serve_cmd::{
    check_clock_offset, init_logging, load_config, node_hash, proxy_config, Rings,
};

#[derive(clap::Args)]
pub struct DaemonArgs {
    /// Data directory of a one-process cluster (made by `apus serve`)
    /// [default: ./apus-data, unless --config describes a node]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Node configuration (TOML; see docs/config.md)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Make one pass and exit
    #[arg(long)]
    once: bool,
}

pub fn run(name: DaemonName, args: &DaemonArgs) -> ExitCode {
    match run_inner(name, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_inner(name: DaemonName, args: &DaemonArgs) -> Result<ExitCode> {
    let conf = load_config(args.data.as_deref(), args.config.as_deref(), None)?;
    init_logging(true);
    check_clock_offset()?;
    if conf.storage.is_none() {
        return Err(anyhow!(
            "{} runs on a node with the storage role",
            name.as_str()
        ));
    }
    let (hash, rings_dir, identity) = match &conf.layout {
        Layout::Local { data } => {
            let conf_path = data.join("swift.conf");
            let text = std::fs::read_to_string(&conf_path).with_context(|| {
                format!(
                    "cannot read {} (has `apus serve` run there?)",
                    conf_path.display()
                )
            })?;
            let hash = apus_core::HashConfig::from_swift_conf(&text)
                .map_err(|e| anyhow!("{}: {e}", conf_path.display()))?;
            let rings = Rings::load(data, &conf)?;
            let identity = LocalIdentity {
                account: first_addr(&rings.account.get(), data)?,
                container: first_addr(&rings.container.get(), data)?,
                object: first_addr(
                    &rings
                        .objects
                        .first()
                        .ok_or_else(|| anyhow!("no object ring"))?
                        .1
                        .get(),
                    data,
                )?,
            };
            (hash, data.clone(), identity)
        }
        Layout::Node { hash, rings_dir } => {
            let addrs = conf
                .storage
                .as_ref()
                .and_then(|s| s.addrs)
                .ok_or_else(|| anyhow!("the storage node has no addresses"))?;
            let identity = LocalIdentity {
                account: addrs.account,
                container: addrs.container,
                object: addrs.object,
            };
            (node_hash(hash)?, rings_dir.clone(), identity)
        }
    };
    let rings = Rings::load(&rings_dir, &conf)?;
    let internal = proxy_config(&conf, &hash, &rings)?;
    let daemons = Daemons::new(&conf, hash, rings_dir, identity, Some(internal))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let code = runtime.block_on(async {
        if args.once {
            let pass = daemons.run_once(name).await?;
            println!("{}", pass.to_json());
            return Ok::<_, anyhow::Error>(if pass.completed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let (stop, shutdown) = Shutdown::new();
        let mut tasks = JoinSet::new();
        daemons.spawn(name, shutdown, &mut tasks)?;
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
            _ = tasks.join_next() => {}
        }
        let _ = stop.send(true);
        while tasks.join_next().await.is_some() {}
        Ok(ExitCode::SUCCESS)
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    Ok(code)
}

/// The address of a local cluster's ring: every device has the same one.
fn first_addr(ring: &apus_ring::Ring, data: &Path) -> Result<std::net::SocketAddr> {
    let dev = ring
        .devs()
        .next()
        .ok_or_else(|| anyhow!("a ring in {} has no devices", data.display()))?;
    format!("{}:{}", dev.replication_ip, dev.replication_port)
        .parse()
        .map_err(|e| {
            anyhow!(
                "device address {}:{}: {e}",
                dev.replication_ip,
                dev.replication_port
            )
        })
}
