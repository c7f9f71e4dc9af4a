//! `apus bench`: load any Swift-API or S3 endpoint and report rates and
//! latencies (see the `apus-bench` crate, which does the work).
//!
//! `apus bench [OPTIONS]` runs a mix of ops for a duration or a number of
//! ops; `apus bench suite` runs the fixed suite `scripts/bench.sh`
//! compares apus and Swift with. Exit codes: 0 when every request
//! succeeded, 1 when some failed (the summary says which), 2 when the run
//! could not start.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use apus_bench::client::{DEFAULT_S3_ENDPOINT, DEFAULT_SWIFT_AUTH};
use apus_bench::workload::{parse_bytes, parse_duration};
use apus_bench::{
    Api, Endpoint, Interrupt, Mix, MixConfig, ProgressStyle, SizeDist, StopAfter, SuiteConfig,
};

/// How long a mixed run lasts when neither --duration nor --ops is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "\
Examples:
  apus bench                                     # apus serve on 127.0.0.1:8080, 10 s
  apus bench -A http://swift:8080/auth/v1.0 -U test:tester -K testing \\
      --mix put=20,get=70,delete=10 --size 4KiB:80,1MiB:20 -c 64 --duration 1m
  apus bench --s3 -A http://127.0.0.1:8080 --ops 10000 --json
  apus bench --mix put=100 --ops 50000 --container scale --first-object 50000 --dirs 1000 --keep
                                                 # one step of scripts/bench-scale.sh
  apus bench suite --objects 2000 --large-mib 1024   # the lines scripts/bench.sh compares

Exit status: 0 if every request succeeded, 1 if some failed, 2 if the run could not start."
)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    #[command(flatten)]
    endpoint: EndpointArgs,
    #[command(flatten)]
    workload: WorkloadArgs,
}

#[derive(clap::Subcommand)]
enum BenchCommand {
    /// The fixed suite scripts/bench.sh compares: small-object
    /// PUT/GET/HEAD/DELETE ops/s with p50 and p99 ms, a 10,000-object
    /// listing (Swift API only), large-object PUT/GET MB/s; one
    /// `metric value unit` line each, and any failed request fails it
    Suite(SuiteArgs),
}

#[derive(clap::Args)]
#[command(next_help_heading = "Endpoint")]
struct EndpointArgs {
    /// Swift v1.0 auth URL, or with --s3 the S3 endpoint [default:
    /// http://127.0.0.1:8080/auth/v1.0, with --s3 http://127.0.0.1:8080]
    #[arg(short = 'A', long = "auth", value_name = "URL")]
    auth: Option<String>,
    /// Swift user, or S3 access key
    #[arg(short = 'U', long, default_value = "test:tester")]
    user: String,
    /// Swift key, or S3 secret key
    #[arg(short = 'K', long, default_value = "testing")]
    key: String,
    /// Speak S3 (path-style, AWS Signature V4, UNSIGNED-PAYLOAD) instead
    /// of the Swift API
    #[arg(long)]
    s3: bool,
    /// The region S3 signatures name
    #[arg(long, default_value = "us-east-1", value_name = "REGION")]
    region: String,
}

impl EndpointArgs {
    fn endpoint(&self) -> Endpoint {
        let (api, default_url) = if self.s3 {
            (
                Api::S3 {
                    region: self.region.clone(),
                },
                DEFAULT_S3_ENDPOINT,
            )
        } else {
            (Api::Swift, DEFAULT_SWIFT_AUTH)
        };
        Endpoint {
            url: self.auth.clone().unwrap_or_else(|| default_url.to_string()),
            user: self.user.clone(),
            key: self.key.clone(),
            api,
        }
    }
}

#[derive(clap::Args)]
#[command(next_help_heading = "Workload")]
struct WorkloadArgs {
    /// Ops and their relative weights, from put, get, head, delete and
    /// list (a container listing GET of up to 1,000 names)
    #[arg(
        long,
        default_value = "put=20,get=70,delete=10",
        value_name = "OP=WEIGHT,..."
    )]
    mix: Mix,
    /// Object size: one (4KiB), a uniform range (1KiB-1MiB) or weighted
    /// choices (4KiB:80,1MiB:20). K/KiB, M/MiB, G/GiB are powers of 1024;
    /// KB, MB, GB powers of 1000
    #[arg(long, default_value = "4KiB", value_name = "SIZE")]
    size: SizeDist,
    /// Requests in flight at once
    #[arg(short = 'c', long, default_value_t = 32, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    concurrency: u32,
    /// How long the timed run lasts: 30s, 2m, 500ms [default: 10s]
    #[arg(short = 'd', long, value_name = "TIME", value_parser = parse_duration,
          conflicts_with = "ops")]
    duration: Option<Duration>,
    /// Stop after this many requests instead of after a duration
    #[arg(short = 'n', long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    ops: Option<u64>,
    /// Objects written before the timed run, so GET, HEAD and DELETE have
    /// targets [default: 4 per request in flight, at most 1 GiB in all,
    /// when the mix has get, head or delete; else 0]
    #[arg(long, value_name = "N")]
    prefill: Option<u64>,
    /// Containers (buckets) the objects are spread over
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    containers: u32,
    /// Use this one container (bucket), created if missing and left in
    /// place, instead of new bench-... ones; with --keep and
    /// --first-object, successive runs fill it
    #[arg(long, value_name = "NAME", conflicts_with = "containers")]
    container: Option<String>,
    /// Number the objects written from N (obj-<N>, obj-<N+1>, ...), so
    /// that a run into a --container an earlier run filled writes new names
    #[arg(long, default_value_t = 0, value_name = "N")]
    first_object: u64,
    /// Spread object names over N pseudo-directories: d<i>/obj-<n> with
    /// i = n mod N, zero-padded (1000 gives d000/ .. d999/), so listings
    /// with prefix= and delimiter=/ have structure [default: flat names]
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    dirs: Option<u32>,
    /// X-Storage-Policy of the containers it creates, e.g. ec42 (Swift
    /// API only) [default: the cluster's]
    #[arg(long, conflicts_with = "s3")]
    policy: Option<String>,
    /// Print the summary as one JSON object on stdout
    #[arg(long)]
    json: bool,
    /// Leave the objects and containers in place at the end
    #[arg(long)]
    keep: bool,
}

#[derive(clap::Args)]
#[command(next_help_heading = "Suite")]
struct SuiteArgs {
    /// Requests in flight in the small-object phases
    #[arg(short = 'c', long, default_value_t = 32, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    concurrency: u32,
    /// Objects written, read, headed and deleted by the small-object phases
    #[arg(long, default_value_t = 2000, value_name = "N")]
    objects: usize,
    /// Size of each small object (4096, 4KiB, 1MiB)
    #[arg(long, default_value = "4KiB", value_name = "SIZE", value_parser = parse_bytes)]
    size: u64,
    /// Objects in the listing container (0 skips the listing; Swift API
    /// only)
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    listing: usize,
    /// Size of the large object in MiB (0 skips it)
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    large_mib: u64,
    /// X-Storage-Policy of the containers it creates, e.g. ec42 (Swift
    /// API only) [default: the cluster's]
    #[arg(long, conflicts_with = "s3")]
    policy: Option<String>,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

pub fn run(args: &BenchArgs) -> ExitCode {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_inner(args: &BenchArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let code = match &args.command {
        Some(BenchCommand::Suite(suite)) => runtime.block_on(run_suite(suite))?,
        None => runtime.block_on(run_mix(&args.endpoint, &args.workload))?,
    };
    // Nothing is left to wait for: requests are done, and a pooled
    // connection's task must not hold up the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(code)
}

async fn run_suite(args: &SuiteArgs) -> Result<ExitCode> {
    let config = SuiteConfig {
        concurrency: args.concurrency as usize,
        objects: args.objects,
        size: args.size,
        listing: args.listing,
        large_mib: args.large_mib,
        policy: args.policy.clone(),
    };
    apus_bench::suite::run(&args.endpoint.endpoint(), &config, |metric| {
        println!("{metric}")
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn run_mix(endpoint: &EndpointArgs, args: &WorkloadArgs) -> Result<ExitCode> {
    let prefill = args.prefill.unwrap_or_else(|| {
        apus_bench::mix::default_prefill(&args.mix, &args.size, args.concurrency as usize)
    });
    let stop_after = match (args.ops, args.duration) {
        (Some(n), _) => StopAfter::Ops(n),
        (None, Some(d)) => StopAfter::Duration(d),
        (None, None) => StopAfter::Duration(DEFAULT_DURATION),
    };
    // A terminal gets one line rewritten in place; a log gets lines.
    let progress = if std::io::stderr().is_terminal() {
        ProgressStyle::Live
    } else {
        ProgressStyle::Lines
    };
    let config = MixConfig {
        mix: args.mix.clone(),
        sizes: args.size.clone(),
        concurrency: args.concurrency as usize,
        stop_after,
        prefill,
        containers: args.containers,
        container: args.container.clone(),
        first_object: args.first_object,
        dirs: args.dirs.unwrap_or(0),
        policy: args.policy.clone(),
        keep: args.keep,
        progress,
    };
    let interrupt = Interrupt::default();
    let watcher = tokio::spawn(watch_ctrl_c(interrupt.clone()));
    let outcome = apus_bench::mix::run(&endpoint.endpoint(), &config, &interrupt).await;
    watcher.abort();
    let summary = outcome?;
    if args.json {
        println!("{}", summary.to_json());
    } else {
        print!("{}", summary.to_text());
    }
    Ok(if summary.total.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The first Ctrl-C ends the timed run early (the summary and cleanup
/// still happen); a second one exits at once.
async fn watch_ctrl_c(interrupt: Interrupt) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    interrupt.trigger();
    eprintln!("\ninterrupted: finishing the requests in flight, then cleaning up (Ctrl-C again quits now)");
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.bench)
    }

    #[test]
    fn a_bare_run_has_defaults_for_apus_serve() {
        let args = parse(&[]).unwrap();
        assert!(args.command.is_none());
        let endpoint = args.endpoint.endpoint();
        assert_eq!(endpoint.url, DEFAULT_SWIFT_AUTH);
        assert_eq!(endpoint.api, Api::Swift);
        assert_eq!(args.workload.mix.to_string(), "put=20,get=70,delete=10");
        assert_eq!(args.workload.size, SizeDist::fixed(4096));
        let s3 = parse(&["--s3"]).unwrap().endpoint.endpoint();
        assert_eq!(s3.url, DEFAULT_S3_ENDPOINT);
        assert_eq!(
            s3.api,
            Api::S3 {
                region: "us-east-1".into()
            }
        );
    }

    #[test]
    fn workload_options_parse_with_their_units() {
        let args = parse(&[
            "--mix",
            "put=1,list=2",
            "--size",
            "4KiB:80,1MiB:20",
            "-d",
            "2m",
            "-c",
            "8",
            "--containers",
            "3",
        ])
        .unwrap();
        let w = &args.workload;
        assert_eq!(w.mix.to_string(), "put=1,list=2");
        assert_eq!(w.size.max(), 1 << 20);
        assert_eq!(w.duration, Some(Duration::from_secs(120)));
        assert_eq!((w.concurrency, w.containers), (8, 3));
    }

    #[test]
    fn contradictory_or_bad_options_are_refused() {
        for args in [
            &["--duration", "10s", "--ops", "5"][..],
            &["--s3", "--policy", "ec42"],
            &["--mix", "put=1,post=2"],
            &["--size", "4 potatoes"],
            &["--duration", "0s"],
            &["--concurrency", "0"],
            &["--ops", "0"],
            &["suite", "--mix", "put=1"],
            &["--container", "c", "--containers", "2"],
            &["--dirs", "0"],
            &["--first-object", "-1"],
        ] {
            assert!(parse(args).is_err(), "{args:?} was accepted");
        }
    }

    #[test]
    fn one_named_container_can_be_filled_run_after_run() {
        let args = parse(&[
            "--container",
            "scale",
            "--first-object",
            "50000",
            "--dirs",
            "1000",
            "--keep",
        ])
        .unwrap();
        let w = &args.workload;
        assert_eq!(w.container.as_deref(), Some("scale"));
        assert_eq!((w.first_object, w.dirs, w.keep), (50_000, Some(1000), true));
        let plain = parse(&[]).unwrap().workload;
        assert_eq!(
            (plain.container, plain.first_object, plain.dirs),
            (None, 0, None)
        );
    }

    #[test]
    fn the_suite_takes_the_old_tool_options() {
        let args = parse(&[
            "suite",
            "-A",
            "http://127.0.0.1:8080/auth/v1.0",
            "--objects",
            "10",
            "--listing",
            "0",
            "--large-mib",
            "0",
            "--size",
            "4096",
            "--policy",
            "ec42",
        ])
        .unwrap();
        let Some(BenchCommand::Suite(suite)) = args.command else {
            panic!("not the suite")
        };
        assert_eq!((suite.objects, suite.listing, suite.large_mib), (10, 0, 0));
        assert_eq!(suite.size, 4096);
        assert_eq!(suite.policy.as_deref(), Some("ec42"));
    }
}
