//! `apus ring <builder_file> <command> ...`: swift-ring-builder's commands
//! over apus's builder. Exit codes follow swift-ring-builder: 0 success,
//! 1 warning (nothing to do), 2 error.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use apus_ring::builder::{RebalanceProgress, RingBuilder};
use apus_ring::parse::{
    normalize_address, normalize_ip, parse_add_value, parse_search_value, validate_device_name,
    DevMatch,
};
use apus_ring::{Device, RingData};

use crate::progress::Progress;

const EXIT_WARNING: u8 = 1;
const EXIT_ERROR: u8 = 2;

const USAGE: &str = "\
usage: apus ring <builder_file> [command] [args...]

commands (as swift-ring-builder):
  (none)                                  show the builder and its devices
  create <part_power> <replicas> <min_part_hours>
  add [r<region>]z<zone>-<ip>:<port>[R<r_ip>:<r_port>]/<device>_<meta> <weight> [...]
  add --region N --zone N --ip IP --port N [--replication-ip IP --replication-port N]
      --device NAME --weight W [--meta TEXT] [--id N]
  set_weight <search-value> <weight> [<search-value> <weight> ...] [--yes]
  set_info <search-value> <ip>:<port>[R<r_ip>:<r_port>]/<device>_<meta> [...] [--yes]
  remove <search-value> [<search-value> ...] [--yes]
  rebalance [--force] [--seed N] [--debug]
  validate | write_ring | pretend_min_part_hours_passed
  search <search-value> | list_parts <search-value> [...]
  set_min_part_hours <hours> | set_overload <overload>[%] | set_replicas <replicas>";

/// An outcome that ends the command: the message and the exit code.
struct Exit(u8, String);

type CmdResult = Result<(), Exit>;

fn error(msg: impl Into<String>) -> Exit {
    Exit(EXIT_ERROR, msg.into())
}

pub fn run(args: &[String]) -> ExitCode {
    match dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Exit(code, msg)) => {
            if code == EXIT_ERROR {
                eprintln!("error: {msg}");
            } else if !msg.is_empty() {
                println!("{msg}");
            }
            ExitCode::from(code)
        }
    }
}

/// `object.builder` → (`object.builder`, `object.ring.gz`); a ring file
/// name maps back to its builder, as swift-ring-builder does.
fn file_names(first: &str) -> (PathBuf, PathBuf) {
    if let Some(stem) = first.strip_suffix(".ring.gz") {
        (
            PathBuf::from(format!("{stem}.builder")),
            PathBuf::from(first),
        )
    } else if let Some(stem) = first.strip_suffix(".builder") {
        (
            PathBuf::from(first),
            PathBuf::from(format!("{stem}.ring.gz")),
        )
    } else {
        (
            PathBuf::from(first),
            PathBuf::from(format!("{first}.ring.gz")),
        )
    }
}

fn dispatch(args: &[String]) -> CmdResult {
    let Some(first) = args.first() else {
        return Err(error(USAGE));
    };
    if first == "-h" || first == "--help" {
        println!("{USAGE}");
        return Ok(());
    }
    let (builder_file, ring_file) = file_names(first);
    let command = args.get(1).map(String::as_str).unwrap_or("");
    let rest = args.get(2..).unwrap_or(&[]);
    if command == "create" {
        return create(&builder_file, rest);
    }
    if command == "-h" || command == "--help" || command == "help" {
        println!("{USAGE}");
        return Ok(());
    }
    let mut builder = RingBuilder::load(&builder_file)
        .map_err(|e| error(format!("cannot load {}: {e}", builder_file.display())))?;
    let ctx = Ctx {
        builder_file: &builder_file,
        ring_file: &ring_file,
    };
    match command {
        "" | "show" => show(&ctx, &builder),
        "add" => add(&ctx, &mut builder, rest),
        "set_weight" => set_weight(&ctx, &mut builder, rest),
        "set_info" => set_info(&ctx, &mut builder, rest),
        "remove" => remove(&ctx, &mut builder, rest),
        "rebalance" => rebalance(&ctx, &mut builder, rest),
        "validate" => {
            builder.validate().map_err(|e| error(e.to_string()))?;
            println!("Ring is valid.");
            Ok(())
        }
        "write_ring" => write_ring(&ctx, &builder),
        "search" => search(&builder, rest),
        "list_parts" => list_parts(&builder, rest),
        "pretend_min_part_hours_passed" => {
            builder.pretend_min_part_hours_passed();
            ctx.save(&builder)
        }
        "set_min_part_hours" => {
            let hours = one_arg(rest, "set_min_part_hours <hours>")?;
            let hours: u32 = hours
                .parse()
                .map_err(|_| error(format!("invalid hours {hours:?}")))?;
            builder
                .set_min_part_hours(hours)
                .map_err(|e| error(e.to_string()))?;
            println!("The minimum number of hours before a partition can be reassigned is now set to {hours}");
            ctx.save(&builder)
        }
        "set_overload" => {
            let text = one_arg(rest, "set_overload <overload>[%]")?;
            let overload = parse_overload(text)?;
            builder
                .set_overload(overload)
                .map_err(|e| error(e.to_string()))?;
            println!(
                "The overload factor is now {:.2}% ({overload:.6})",
                overload * 100.0
            );
            ctx.save(&builder)
        }
        "set_replicas" => {
            let text = one_arg(rest, "set_replicas <replicas>")?;
            let replicas: f64 = text
                .parse()
                .map_err(|_| error(format!("invalid replica count {text:?}")))?;
            builder
                .set_replicas(replicas)
                .map_err(|e| error(e.to_string()))?;
            println!("The replica count is now {replicas:.6}.\nThe change will take effect after the next rebalance.");
            ctx.save(&builder)
        }
        other => Err(error(format!(
            "unknown command {other:?} (apus ring --help lists them)"
        ))),
    }
}

struct Ctx<'a> {
    builder_file: &'a Path,
    ring_file: &'a Path,
}

impl Ctx<'_> {
    fn save(&self, builder: &RingBuilder) -> CmdResult {
        builder
            .save(self.builder_file)
            .map_err(|e| error(format!("cannot save {}: {e}", self.builder_file.display())))
    }

    fn write_ring(&self, builder: &RingBuilder) -> CmdResult {
        let ring = builder.ring_data().map_err(|e| error(e.to_string()))?;
        ring.save(self.ring_file)
            .map_err(|e| error(format!("cannot write {}: {e}", self.ring_file.display())))
    }
}

fn one_arg<'a>(rest: &'a [String], usage: &str) -> Result<&'a str, Exit> {
    match rest {
        [one] => Ok(one),
        _ => Err(error(format!("usage: apus ring <builder_file> {usage}"))),
    }
}

fn parse_overload(text: &str) -> Result<f64, Exit> {
    let (number, percent) = match text.strip_suffix('%') {
        Some(n) => (n, true),
        None => (text, false),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| error(format!("invalid overload {text:?}")))?;
    if !value.is_finite() || value < 0.0 {
        return Err(error(format!(
            "invalid overload {text:?}: it must be a non-negative number"
        )));
    }
    Ok(if percent { value / 100.0 } else { value })
}

fn parse_weight(text: &str) -> Result<f64, Exit> {
    match text.parse::<f64>() {
        Ok(w) if w.is_finite() && w >= 0.0 => Ok(w),
        _ => Err(error(format!(
            "invalid weight {text:?}: it must be a non-negative number"
        ))),
    }
}

fn create(builder_file: &Path, rest: &[String]) -> CmdResult {
    let [part_power, replicas, min_part_hours] = rest else {
        return Err(error(
            "usage: apus ring <builder_file> create <part_power> <replicas> <min_part_hours>",
        ));
    };
    let part_power: u32 = part_power
        .parse()
        .map_err(|_| error(format!("invalid part_power {part_power:?}")))?;
    let replicas: f64 = replicas
        .parse()
        .map_err(|_| error(format!("invalid replica count {replicas:?}")))?;
    let min_part_hours: u32 = min_part_hours
        .parse()
        .map_err(|_| error(format!("invalid min_part_hours {min_part_hours:?}")))?;
    let builder =
        RingBuilder::new(part_power, replicas, min_part_hours).map_err(|e| error(e.to_string()))?;
    builder
        .save(builder_file)
        .map_err(|e| error(format!("cannot save {}: {e}", builder_file.display())))
}

fn format_device(dev: &Device) -> String {
    let ip = if dev.ip.contains(':') {
        format!("[{}]", dev.ip)
    } else {
        dev.ip.clone()
    };
    let rip = if dev.replication_ip.contains(':') {
        format!("[{}]", dev.replication_ip)
    } else {
        dev.replication_ip.clone()
    };
    format!(
        "d{}r{}z{}-{}:{}R{}:{}/{}_\"{}\"",
        dev.id, dev.region, dev.zone, ip, dev.port, rip, dev.replication_port, dev.device, dev.meta
    )
}

fn show(ctx: &Ctx, builder: &RingBuilder) -> CmdResult {
    let devs: Vec<&Device> = builder.devs().collect();
    let regions: BTreeSet<u32> = devs.iter().map(|d| d.region).collect();
    let zones: BTreeSet<(u32, u32)> = devs.iter().map(|d| (d.region, d.zone)).collect();
    println!(
        "{}, build version {}",
        ctx.builder_file.display(),
        builder.version()
    );
    println!(
        "{} partitions, {:.6} replicas, {} regions, {} zones, {} devices, {:.2} balance, {:.2} dispersion",
        1u64 << builder.part_power(),
        builder.replicas(),
        regions.len(),
        zones.len(),
        devs.len(),
        builder.balance(),
        builder.dispersion()
    );
    let left = builder.min_part_seconds_left();
    println!(
        "The minimum number of hours before a partition can be reassigned is {} ({}:{:02}:{:02} remaining)",
        builder.min_part_hours(),
        left / 3600,
        (left % 3600) / 60,
        left % 60
    );
    println!(
        "The overload factor is {:.2}% ({:.6})",
        builder.overload() * 100.0,
        builder.overload()
    );
    match (builder.ring_data(), RingData::load(ctx.ring_file)) {
        (_, Err(apus_ring::RingFileError::Io(e))) if e.kind() == std::io::ErrorKind::NotFound => {
            println!(
                "Ring file {} not found, probably it hasn't been written yet",
                ctx.ring_file.display()
            )
        }
        (_, Err(e)) => println!("Ring file {} is invalid: {e}", ctx.ring_file.display()),
        (Ok(current), Ok(on_disk)) if current == on_disk => {
            println!("Ring file {} is up-to-date", ctx.ring_file.display())
        }
        _ => println!("Ring file {} is obsolete", ctx.ring_file.display()),
    }
    println!(
        "Devices:   id region zone      ip address:port replication ip:port  name weight partitions balance flags meta"
    );
    let mut sorted = devs.clone();
    sorted.sort_by(|a, b| {
        (a.region, a.zone, &a.ip, &a.device).cmp(&(b.region, b.zone, &b.ip, &b.device))
    });
    for dev in sorted {
        let flags = if builder.is_marked_for_removal(dev.id) {
            "DEL"
        } else {
            ""
        };
        println!(
            "         {:>4} {:>6} {:>4} {:>21} {:>19} {:>5} {:>6.2} {:>10} {:>7.2} {:>5} {}",
            dev.id,
            dev.region,
            dev.zone,
            format!("{}:{}", dev.ip, dev.port),
            format!("{}:{}", dev.replication_ip, dev.replication_port),
            dev.device,
            dev.weight,
            builder.dev_parts(dev.id),
            builder.dev_balance(dev.id),
            flags,
            dev.meta
        );
    }
    Ok(())
}

/// The long `--region ... --weight` form of add, or `--id` style options.
#[derive(Default)]
struct LongOpts {
    id: Option<u32>,
    region: Option<u32>,
    zone: Option<u32>,
    ip: Option<String>,
    port: Option<u16>,
    replication_ip: Option<String>,
    replication_port: Option<u16>,
    device: Option<String>,
    weight: Option<f64>,
    meta: Option<String>,
    yes: bool,
}

fn parse_long_opts(args: &[String]) -> Result<(LongOpts, Vec<String>), Exit> {
    let mut opts = LongOpts::default();
    let mut positional = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let takes_value = matches!(
            name,
            "-u" | "--id"
                | "-r"
                | "--region"
                | "-z"
                | "--zone"
                | "-i"
                | "--ip"
                | "-p"
                | "--port"
                | "-j"
                | "--replication-ip"
                | "-q"
                | "--replication-port"
                | "-d"
                | "--device"
                | "-w"
                | "--weight"
                | "-m"
                | "--meta"
        );
        if name == "-y" || name == "--yes" {
            opts.yes = true;
            continue;
        }
        if !takes_value {
            if name.starts_with("--") {
                return Err(error(format!("unknown option {name}")));
            }
            positional.push(arg.clone());
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => iter
                .next()
                .cloned()
                .ok_or_else(|| error(format!("{name} needs a value")))?,
        };
        let number = |what: &str| -> Result<u32, Exit> {
            value
                .parse()
                .map_err(|_| error(format!("invalid {what} {value:?}")))
        };
        let port = |what: &str| -> Result<u16, Exit> {
            value
                .parse()
                .map_err(|_| error(format!("invalid {what} {value:?}")))
        };
        match name {
            "-u" | "--id" => opts.id = Some(number("device id")?),
            "-r" | "--region" => opts.region = Some(number("region")?),
            "-z" | "--zone" => opts.zone = Some(number("zone")?),
            "-i" | "--ip" => opts.ip = Some(value),
            "-p" | "--port" => opts.port = Some(port("port")?),
            "-j" | "--replication-ip" => opts.replication_ip = Some(value),
            "-q" | "--replication-port" => opts.replication_port = Some(port("replication port")?),
            "-d" | "--device" => opts.device = Some(value),
            "-w" | "--weight" => opts.weight = Some(parse_weight(&value)?),
            _ => opts.meta = Some(value),
        }
    }
    Ok((opts, positional))
}

fn add(ctx: &Ctx, builder: &mut RingBuilder, rest: &[String]) -> CmdResult {
    let (opts, positional) = parse_long_opts(rest)?;
    let mut new_devs = Vec::new();
    if opts.zone.is_some() || opts.ip.is_some() || opts.device.is_some() || opts.weight.is_some() {
        if !positional.is_empty() {
            return Err(error(
                "give devices either as add values or as --options, not both",
            ));
        }
        let missing = |what: &str| error(format!("required argument --{what} not given"));
        let ip = normalize_address(opts.ip.as_deref().ok_or_else(|| missing("ip"))?)
            .map_err(|e| error(e.0))?;
        let port = opts.port.ok_or_else(|| missing("port"))?;
        let device = opts.device.clone().ok_or_else(|| missing("device"))?;
        validate_device_name(&device).map_err(|e| error(e.0))?;
        let replication_ip = match &opts.replication_ip {
            Some(rip) => normalize_address(rip).map_err(|e| error(e.0))?,
            None => ip.clone(),
        };
        new_devs.push(Device {
            id: opts.id.unwrap_or(u32::MAX),
            region: opts.region.ok_or_else(|| missing("region"))?,
            zone: opts.zone.ok_or_else(|| missing("zone"))?,
            replication_ip,
            replication_port: opts.replication_port.unwrap_or(port),
            ip,
            port,
            device,
            weight: opts.weight.ok_or_else(|| missing("weight"))?,
            meta: opts.meta.clone().unwrap_or_default(),
        });
    } else {
        if positional.is_empty() || positional.len() % 2 != 0 {
            return Err(error(
                "usage: apus ring <builder_file> add [r<region>]z<zone>-<ip>:<port>[R<r_ip>:<r_port>]/<device>_<meta> <weight> [...]",
            ));
        }
        for pair in positional.chunks(2) {
            let value = parse_add_value(&pair[0]).map_err(|e| error(e.0))?;
            let weight = parse_weight(&pair[1])?;
            new_devs.push(Device {
                id: u32::MAX,
                region: value.region.unwrap_or(1),
                zone: value.zone,
                replication_ip: value.replication_ip.unwrap_or_else(|| value.ip.clone()),
                replication_port: value.replication_port.unwrap_or(value.port),
                ip: value.ip,
                port: value.port,
                device: value.device,
                weight,
                meta: value.meta,
            });
        }
    }
    for dev in new_devs {
        let shown = format!(
            "r{}z{}-{}:{}/{}_\"{}\"",
            dev.region, dev.zone, dev.ip, dev.port, dev.device, dev.meta
        );
        let weight = dev.weight;
        let id = builder.add_dev(dev).map_err(|e| error(e.to_string()))?;
        println!("Device {shown} with {weight} weight got id {id}");
    }
    ctx.save(builder)
}

/// The devices a search value selects; more than one needs `--yes`.
fn select(builder: &RingBuilder, search: &str, yes: bool) -> Result<Vec<u32>, Exit> {
    let m: DevMatch = parse_search_value(search).map_err(|e| error(e.0))?;
    let ids: Vec<u32> = builder
        .devs()
        .filter(|d| m.matches(d))
        .map(|d| d.id)
        .collect();
    if ids.is_empty() {
        return Err(error(format!("search value {search:?} matches no devices")));
    }
    if ids.len() > 1 && !yes {
        let list: Vec<String> = ids
            .iter()
            .filter_map(|id| builder.dev(*id).map(format_device))
            .collect();
        return Err(error(format!(
            "search value {search:?} matches {} devices ({}); add --yes to change them all",
            ids.len(),
            list.join(", ")
        )));
    }
    Ok(ids)
}

/// The options and the `<search-value> <value>` pairs of set_weight and
/// set_info; `usage` is shown when the pairs are missing or odd.
fn search_pairs(rest: &[String], usage: &str) -> Result<(LongOpts, Vec<String>), Exit> {
    let (opts, positional) = parse_long_opts(rest)?;
    if positional.is_empty() || positional.len() % 2 != 0 {
        return Err(error(format!("usage: apus ring <builder_file> {usage}")));
    }
    Ok((opts, positional))
}

fn set_weight(ctx: &Ctx, builder: &mut RingBuilder, rest: &[String]) -> CmdResult {
    let (opts, positional) =
        search_pairs(rest, "set_weight <search-value> <weight> [...] [--yes]")?;
    for pair in positional.chunks(2) {
        let weight = parse_weight(&pair[1])?;
        for id in select(builder, &pair[0], opts.yes)? {
            builder
                .set_dev_weight(id, weight)
                .map_err(|e| error(e.to_string()))?;
            if let Some(dev) = builder.dev(id) {
                println!("{} weight set to {weight}", format_device(dev));
            }
        }
    }
    ctx.save(builder)
}

/// `<ip>:<port>R<r_ip>:<r_port>/<device>_<meta>`, every part optional.
#[derive(Default)]
struct InfoChange {
    ip: Option<String>,
    port: Option<u16>,
    replication_ip: Option<String>,
    replication_port: Option<u16>,
    device: Option<String>,
    meta: Option<String>,
}

fn take_address(s: &str) -> Result<(Option<String>, Option<u16>, &str), Exit> {
    let (ip, rest) = if let Some(inner) = s.strip_prefix('[') {
        let (ip, rest) = inner
            .split_once(']')
            .ok_or_else(|| error(format!("unclosed [ in {s:?}")))?;
        (Some(normalize_ip(ip).map_err(|e| error(e.0))?), rest)
    } else {
        let end = s.find([':', 'R', '/', '_']).unwrap_or(s.len());
        if end == 0 {
            (None, s)
        } else {
            (
                Some(normalize_address(&s[..end]).map_err(|e| error(e.0))?),
                &s[end..],
            )
        }
    };
    if let Some(after) = rest.strip_prefix(':') {
        let end = after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len());
        let port = after[..end]
            .parse()
            .map_err(|_| error(format!("invalid port in {s:?}")))?;
        return Ok((ip, Some(port), &after[end..]));
    }
    Ok((ip, None, rest))
}

fn parse_info_change(text: &str) -> Result<InfoChange, Exit> {
    let mut change = InfoChange::default();
    let (ip, port, mut rest) = take_address(text)?;
    change.ip = ip;
    change.port = port;
    if let Some(r) = rest.strip_prefix('R') {
        let (rip, rport, r) = take_address(r)?;
        change.replication_ip = rip;
        change.replication_port = rport;
        rest = r;
    }
    if let Some(r) = rest.strip_prefix('/') {
        let end = r.find('_').unwrap_or(r.len());
        validate_device_name(&r[..end]).map_err(|e| error(e.0))?;
        change.device = Some(r[..end].to_string());
        rest = &r[end..];
    }
    if let Some(meta) = rest.strip_prefix('_') {
        change.meta = Some(meta.to_string());
        rest = "";
    }
    if !rest.is_empty() {
        return Err(error(format!("invalid change value {text:?}")));
    }
    Ok(change)
}

fn set_info(ctx: &Ctx, builder: &mut RingBuilder, rest: &[String]) -> CmdResult {
    let (opts, positional) = search_pairs(
        rest,
        "set_info <search-value> <ip>:<port>[R<r_ip>:<r_port>]/<device>_<meta> [...] [--yes]",
    )?;
    for pair in positional.chunks(2) {
        let change = parse_info_change(&pair[1])?;
        for id in select(builder, &pair[0], opts.yes)? {
            let before = builder.dev(id).map(format_device).unwrap_or_default();
            let c = &change;
            builder
                .set_dev_info(id, |dev| {
                    if let Some(ip) = &c.ip {
                        dev.ip = ip.clone();
                    }
                    if let Some(port) = c.port {
                        dev.port = port;
                    }
                    if let Some(rip) = &c.replication_ip {
                        dev.replication_ip = rip.clone();
                    }
                    if let Some(rport) = c.replication_port {
                        dev.replication_port = rport;
                    }
                    if let Some(device) = &c.device {
                        dev.device = device.clone();
                    }
                    if let Some(meta) = &c.meta {
                        dev.meta = meta.clone();
                    }
                })
                .map_err(|e| error(e.to_string()))?;
            let after = builder.dev(id).map(format_device).unwrap_or_default();
            println!("Device {before} is now {after}");
        }
    }
    ctx.save(builder)
}

fn remove(ctx: &Ctx, builder: &mut RingBuilder, rest: &[String]) -> CmdResult {
    let (opts, positional) = parse_long_opts(rest)?;
    if positional.is_empty() {
        return Err(error(
            "usage: apus ring <builder_file> remove <search-value> [...] [--yes]",
        ));
    }
    for search in &positional {
        for id in select(builder, search, opts.yes)? {
            let shown = builder.dev(id).map(format_device).unwrap_or_default();
            builder.remove_dev(id).map_err(|e| error(e.to_string()))?;
            println!("{shown} marked for removal and will be removed next rebalance.");
        }
    }
    ctx.save(builder)
}

fn rebalance(ctx: &Ctx, builder: &mut RingBuilder, rest: &[String]) -> CmdResult {
    let mut force = false;
    let mut debug = false;
    let mut seed = None;
    let mut iter = rest.iter();
    while let Some(arg) = iter.next() {
        let parse_seed = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| error(format!("invalid seed {v:?}")))
        };
        match arg.as_str() {
            "-f" | "--force" => force = true,
            "-d" | "--debug" => debug = true,
            "-s" | "--seed" => {
                let v = iter.next().ok_or_else(|| error("--seed needs a value"))?;
                seed = Some(parse_seed(v)?);
            }
            other => match other.strip_prefix("--seed=") {
                Some(v) => seed = Some(parse_seed(v)?),
                None if !other.starts_with('-') => seed = Some(parse_seed(other)?),
                None => return Err(error(format!("unknown option {other}"))),
            },
        }
    }
    // On a terminal only: a rebalance is seconds at most, not worth log lines.
    let mut bar = if debug {
        Progress::silent()
    } else {
        Progress::new(None)
    };
    let started = std::time::Instant::now();
    // With --debug, each stage's start in milliseconds since the command began.
    let lap = |what: &str| {
        if debug {
            eprintln!(
                "DEBUG: {:>8.1} ms  {what}",
                started.elapsed().as_secs_f64() * 1e3
            );
        }
    };
    let mut last_stage = "";
    let mut progress = |p: RebalanceProgress| {
        if p.stage != last_stage {
            lap(p.stage);
            last_stage = p.stage;
        }
        if p.total > 0 {
            bar.update(p.done == p.total, || {
                format!(
                    "{}: {}/{} ({:.0}%)",
                    p.stage,
                    p.done,
                    p.total,
                    100.0 * p.done as f64 / p.total as f64
                )
            });
        }
    };
    let seconds_left = builder.min_part_seconds_left();
    let report = builder
        .rebalance(seed, &mut progress)
        .map_err(|e| error(e.to_string()))?;
    bar.finish();
    if report.parts_moved == 0 && report.removed_devices.is_empty() && !force {
        let why = if seconds_left > 0 {
            format!(
                "The time between rebalances must be at least min_part_hours: {} hours ({}:{:02}:{:02} remaining)",
                builder.min_part_hours(),
                seconds_left / 3600,
                (seconds_left % 3600) / 60,
                seconds_left % 60
            )
        } else {
            "There is no need to do so at this time".to_string()
        };
        return Err(Exit(
            EXIT_WARNING,
            format!("No partitions could be reassigned.\n{why}"),
        ));
    }
    builder
        .validate()
        .map_err(|e| error(format!("the rebalanced ring is not valid: {e}")))?;
    for dev in &report.removed_devices {
        println!("Removed {}", format_device(dev));
    }
    let total = (1u64 << builder.part_power()) as f64 * builder.replicas();
    println!(
        "Reassigned {} ({:.2}%) partition replicas. Balance is now {:.2}.  Dispersion is now {:.2}",
        report.parts_moved,
        100.0 * report.parts_moved as f64 / total,
        report.balance,
        report.dispersion
    );
    lap("rebalanced and validated");
    ctx.save(builder)?;
    lap("builder saved");
    ctx.write_ring(builder)?;
    lap("ring written");
    if report.dispersion > 0.0 {
        return Err(Exit(
            EXIT_WARNING,
            format!(
                "NOTE: Dispersion of {:.6} indicates some parts are not optimally dispersed.\n      You may want to adjust some device weights, increase the overload or review the dispersion report.",
                report.dispersion
            ),
        ));
    }
    if report.balance > 5.0 && report.balance / 100.0 > builder.overload() {
        return Err(Exit(
            EXIT_WARNING,
            format!(
                "NOTE: Balance of {:.2} indicates you should push this ring, wait at least {} hours, and rebalance/repush.",
                report.balance,
                builder.min_part_hours()
            ),
        ));
    }
    Ok(())
}

fn write_ring(ctx: &Ctx, builder: &RingBuilder) -> CmdResult {
    ctx.write_ring(builder)?;
    println!("Wrote {}", ctx.ring_file.display());
    Ok(())
}

fn search(builder: &RingBuilder, rest: &[String]) -> CmdResult {
    let text = one_arg(rest, "search <search-value>")?;
    let m = parse_search_value(text).map_err(|e| error(e.0))?;
    let found: Vec<&Device> = builder.devs().filter(|d| m.matches(d)).collect();
    if found.is_empty() {
        return Err(error(format!("no matching devices found for {text:?}")));
    }
    println!("Devices:   id region zone      ip address:port replication ip:port  name weight partitions meta");
    for dev in found {
        println!(
            "         {:>4} {:>6} {:>4} {:>21} {:>19} {:>5} {:>6.2} {:>10} {}",
            dev.id,
            dev.region,
            dev.zone,
            format!("{}:{}", dev.ip, dev.port),
            format!("{}:{}", dev.replication_ip, dev.replication_port),
            dev.device,
            dev.weight,
            builder.dev_parts(dev.id),
            dev.meta
        );
    }
    Ok(())
}

fn list_parts(builder: &RingBuilder, rest: &[String]) -> CmdResult {
    if rest.is_empty() {
        return Err(error(
            "usage: apus ring <builder_file> list_parts <search-value> [...]",
        ));
    }
    let mut wanted = BTreeSet::new();
    for text in rest {
        let m = parse_search_value(text).map_err(|e| error(e.0))?;
        wanted.extend(builder.devs().filter(|d| m.matches(d)).map(|d| d.id));
    }
    if wanted.is_empty() {
        return Err(error("no matching devices found"));
    }
    let mut rows: Vec<(usize, u32)> = Vec::new();
    for part in 0..(1u32 << builder.part_power().min(31)) {
        let matches = builder
            .part_devices(part)
            .iter()
            .filter(|id| wanted.contains(id))
            .count();
        if matches > 0 {
            rows.push((matches, part));
        }
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    println!("Partition   Matches");
    for (matches, part) in rows {
        println!("{part:>9}   {matches:>7}");
    }
    Ok(())
}
