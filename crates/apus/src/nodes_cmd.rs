//! `apus nodes`: what `swift-get-nodes` answers for a name.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use apus_core::HashConfig;
use apus_ring::{Device, Ring};
use serde_json::json;

#[derive(clap::Args)]
pub struct NodesArgs {
    /// The ring file, e.g. object.ring.gz.
    ring: PathBuf,
    account: String,
    container: Option<String>,
    object: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// A Swift swift.conf whose [swift-hash] gives the hash path prefix and suffix.
    #[arg(long, value_name = "FILE")]
    swift_conf: Option<PathBuf>,
    /// The hash path prefix (overrides --swift-conf).
    #[arg(long)]
    hash_prefix: Option<String>,
    /// The hash path suffix (overrides --swift-conf).
    #[arg(long)]
    hash_suffix: Option<String>,
    /// How many handoffs to list (default: all).
    #[arg(long)]
    handoffs: Option<usize>,
}

pub fn run(args: &NodesArgs) -> ExitCode {
    match nodes(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn hash_config(args: &NodesArgs) -> anyhow::Result<HashConfig> {
    let mut conf = match &args.swift_conf {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            HashConfig::from_swift_conf(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => HashConfig::default(),
    };
    if let Some(prefix) = &args.hash_prefix {
        conf.prefix = prefix.as_bytes().to_vec();
    }
    if let Some(suffix) = &args.hash_suffix {
        conf.suffix = suffix.as_bytes().to_vec();
    }
    if conf.prefix.is_empty() && conf.suffix.is_empty() {
        bail!("no hash path prefix or suffix: give --swift-conf, --hash-prefix or --hash-suffix");
    }
    Ok(conf)
}

fn dev_json(dev: &Device) -> serde_json::Value {
    json!({
        "id": dev.id,
        "ip": dev.ip,
        "port": dev.port,
        "device": dev.device,
        "region": dev.region,
        "zone": dev.zone,
    })
}

fn nodes(args: &NodesArgs) -> anyhow::Result<()> {
    if args.object.is_some() && args.container.is_none() {
        bail!("an object needs a container");
    }
    let hash = hash_config(args)?;
    let ring =
        Ring::load(&args.ring).with_context(|| format!("cannot load {}", args.ring.display()))?;
    let container = args.container.as_deref();
    let object = args.object.as_deref();
    let part = ring.partition(&hash, &args.account, container, object);
    let digest = hash.hash_path(&args.account, container, object);
    let primaries = ring.primaries(part);
    let handoffs: Vec<&Device> = ring
        .handoffs(part)
        .take(args.handoffs.unwrap_or(usize::MAX))
        .collect();
    if args.json {
        let out = json!({
            "partition": part,
            "hash": digest,
            "primaries": primaries.iter().map(|d| dev_json(d)).collect::<Vec<_>>(),
            "handoffs": handoffs.iter().map(|d| dev_json(d)).collect::<Vec<_>>(),
        });
        println!("{out}");
        return Ok(());
    }
    println!("Account     \t{}", args.account);
    println!("Container   \t{}", container.unwrap_or("None"));
    println!("Object      \t{}", object.unwrap_or("None"));
    println!();
    println!("Partition\t{part}");
    println!("Hash     \t{digest}");
    println!();
    let kind = match (container, object) {
        (_, Some(_)) => "objects",
        (Some(_), None) => "containers",
        _ => "accounts",
    };
    for dev in &primaries {
        println!("Server:Port Device\t{}:{} {}", dev.ip, dev.port, dev.device);
    }
    for dev in &handoffs {
        println!(
            "Server:Port Device\t{}:{} {}\t [Handoff]",
            dev.ip, dev.port, dev.device
        );
    }
    println!();
    let suffix = &digest[digest.len() - 3..];
    for dev in &primaries {
        println!(
            "ssh {} \"ls -lah ${{DEVICE:-/srv/node*}}/{}/{kind}/{part}/{suffix}/{digest}\"",
            dev.ip, dev.device
        );
    }
    for dev in &handoffs {
        println!(
            "ssh {} \"ls -lah ${{DEVICE:-/srv/node*}}/{}/{kind}/{part}/{suffix}/{digest}\" # [Handoff]",
            dev.ip, dev.device
        );
    }
    Ok(())
}
