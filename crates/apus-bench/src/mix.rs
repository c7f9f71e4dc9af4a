//! The mixed workload: `concurrency` tasks each drawing an op from the
//! mix and sending it, for a duration or a number of ops, after a prefill
//! that gives reads and deletes something to act on; progress while it
//! runs, a [`Summary`] at the end, and everything it wrote deleted.
//!
//! Failed requests are counted, never fatal. So that a failure means the
//! store failed, no two requests ever race on one object: PUTs write new
//! names only, and a GET, HEAD or DELETE takes its object out of the live
//! set for as long as its request lasts ([`LiveObjects`]).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use http::{Method, StatusCode};
use tokio::time::Instant;

use crate::client::{Endpoint, Session};
use crate::histogram::{AtomicHistogram, Histogram};
use crate::summary::{OpSummary, Summary};
use crate::workload::{Mix, Op, SizeDist};

/// How long a GET, HEAD or DELETE waits before looking again when every
/// object is held by another request.
const BUSY_RETRY: Duration = Duration::from_millis(1);

/// A listing GET reads at most this many names, Swift's page size for
/// many clients' first page; S3 caps its pages at 1,000 too.
pub const LIST_LIMIT: u32 = 1000;

/// Objects prefilled per request in flight when no prefill is given:
/// enough that a GET, HEAD or DELETE seldom waits for an object another
/// request holds...
const DEFAULT_PREFILL_PER_TASK: u64 = 4;
/// ...but no more bytes than this in all, so that a run of large objects
/// does not begin by writing tens of gigabytes.
const DEFAULT_PREFILL_BYTES: u64 = 1 << 30;

/// How many objects to write before the timed part when the user did not
/// say: none when the mix only writes or lists, else a few per request in
/// flight, within [`DEFAULT_PREFILL_BYTES`] (and at least one).
pub fn default_prefill(mix: &Mix, sizes: &SizeDist, concurrency: usize) -> u64 {
    let acts_on_objects = Op::ALL
        .into_iter()
        .any(|op| op.needs_object() && mix.has(op));
    if !acts_on_objects {
        return 0;
    }
    let wanted = DEFAULT_PREFILL_PER_TASK.saturating_mul(concurrency as u64);
    let affordable = DEFAULT_PREFILL_BYTES / sizes.mean().max(1);
    wanted.min(affordable).max(1)
}

/// When the timed part ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopAfter {
    /// After this long (requests in flight then still complete).
    Duration(Duration),
    /// After this many requests have been started.
    Ops(u64),
}

/// How progress is shown on stderr while a run goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressStyle {
    /// One line rewritten in place about once a second (a terminal).
    Live,
    /// A plain line every few seconds (a log file or a pipe).
    Lines,
    /// Nothing.
    Quiet,
}

impl ProgressStyle {
    fn period(self) -> Duration {
        match self {
            ProgressStyle::Live => Duration::from_secs(1),
            _ => Duration::from_secs(5),
        }
    }
}

/// Everything a mixed run needs besides the endpoint.
#[derive(Clone, Debug)]
pub struct MixConfig {
    pub mix: Mix,
    pub sizes: SizeDist,
    /// Requests in flight at once.
    pub concurrency: usize,
    pub stop_after: StopAfter,
    /// Objects written before the timed part.
    pub prefill: u64,
    /// Containers (buckets) the objects are spread over.
    pub containers: u32,
    /// One container of this name, created if missing and never deleted,
    /// instead of `containers` new ones: successive runs with `keep` and
    /// `first_object` can fill it.
    pub container: Option<String>,
    /// The number of the first object written; every PUT writes the next.
    pub first_object: u64,
    /// Object names spread over this many pseudo-directories (see
    /// [`object_name`]); 0 for flat names.
    pub dirs: u32,
    /// The containers' `X-Storage-Policy` (Swift only).
    pub policy: Option<String>,
    /// Leave the objects and containers in place at the end.
    pub keep: bool,
    pub progress: ProgressStyle,
}

/// The name of object `number`: `obj-<number>` (10 digits), or with
/// `dirs` pseudo-directories `d<i>/obj-<number>` with `i = number % dirs`,
/// zero-padded to the width of `dirs - 1`, so that names sort by
/// directory and a listing with `prefix=d7/&delimiter=/` or
/// `delimiter=/` has something to find. 1,000 directories give
/// `d000/` .. `d999/`.
pub fn object_name(number: u64, dirs: u32) -> String {
    if dirs == 0 {
        return format!("obj-{number:010}");
    }
    let width = (dirs - 1).max(1).to_string().len();
    format!("d{:0width$}/obj-{number:010}", number % u64::from(dirs))
}

/// Ends a run early from outside, as Ctrl-C does: the timed part stops
/// starting requests, and the summary and the cleanup follow.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    pub fn trigger(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// One object a run wrote: its container (by index) and number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ObjectKey {
    container: u32,
    number: u64,
}

/// What [`LiveObjects::take`] found.
#[derive(Debug, PartialEq, Eq)]
enum Take {
    Got(ObjectKey),
    /// Objects exist, but every one is in use by another request.
    Busy,
    /// No object exists.
    Empty,
}

/// The objects that exist and are not in use. A request on an object
/// takes it out ([`LiveObjects::take`]) and, unless it deleted it, puts it
/// back ([`LiveObjects::release`]): no other request sees it meanwhile.
#[derive(Default)]
struct LiveObjects {
    inner: Mutex<LiveInner>,
}

#[derive(Default)]
struct LiveInner {
    idle: Vec<ObjectKey>,
    in_use: usize,
}

impl LiveObjects {
    fn lock(&self) -> std::sync::MutexGuard<'_, LiveInner> {
        // The lock guards plain pushes and pops: a panic elsewhere cannot
        // leave the set half-changed.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, key: ObjectKey) {
        self.lock().idle.push(key);
    }

    /// Takes a uniformly random idle object (`r` draws it).
    fn take(&self, r: u64) -> Take {
        let mut live = self.lock();
        if live.idle.is_empty() {
            return if live.in_use > 0 {
                Take::Busy
            } else {
                Take::Empty
            };
        }
        let i = (r % live.idle.len() as u64) as usize;
        let key = live.idle.swap_remove(i);
        live.in_use += 1;
        Take::Got(key)
    }

    /// Returns an object taken with [`LiveObjects::take`]: it still exists.
    fn release(&self, key: ObjectKey) {
        let mut live = self.lock();
        live.in_use -= 1;
        live.idle.push(key);
    }

    /// Drops an object taken with [`LiveObjects::take`]: it is gone.
    fn forget(&self) {
        self.lock().in_use -= 1;
    }

    fn len(&self) -> usize {
        let live = self.lock();
        live.idle.len() + live.in_use
    }

    fn drain(&self) -> Vec<ObjectKey> {
        std::mem::take(&mut self.lock().idle)
    }
}

/// Why a request failed: an error status, or no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Failure {
    Status(u16),
    Transport,
}

impl Failure {
    fn label(self) -> String {
        match self {
            Failure::Status(s) => s.to_string(),
            Failure::Transport => "transport".to_string(),
        }
    }
}

/// One op's tallies, recorded into by every task at once.
#[derive(Default)]
struct OpStats {
    latency: AtomicHistogram,
    ok: AtomicU64,
    bytes: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<BTreeMap<Failure, u64>>,
    first_transport_error: Mutex<Option<String>>,
}

/// Every op's tallies: memory fixed per op, whatever the number of
/// requests.
#[derive(Default)]
struct Recorder {
    ops: [OpStats; 5],
    /// Draws that found no object at all, and sent nothing.
    skipped: AtomicU64,
    /// Draws that waited for an object another request held.
    waited: AtomicU64,
}

impl Recorder {
    fn success(&self, op: Op, took: Duration, bytes: u64) {
        let stats = &self.ops[op.index()];
        stats.latency.record(took);
        stats.bytes.fetch_add(bytes, Ordering::Relaxed);
        stats.ok.fetch_add(1, Ordering::Relaxed);
    }

    fn failure(&self, op: Op, failure: Failure, message: Option<String>) {
        let stats = &self.ops[op.index()];
        stats.failed.fetch_add(1, Ordering::Relaxed);
        *stats
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(failure)
            .or_default() += 1;
        if let Some(message) = message {
            let mut first = stats
                .first_transport_error
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            first.get_or_insert(message);
        }
    }

    fn ok_count(&self) -> u64 {
        self.ops.iter().map(|s| s.ok.load(Ordering::Relaxed)).sum()
    }

    fn failed_count(&self) -> u64 {
        self.ops
            .iter()
            .map(|s| s.failed.load(Ordering::Relaxed))
            .sum()
    }

    fn all_latencies(&self) -> Histogram {
        let mut all = Histogram::default();
        for stats in &self.ops {
            all.merge(&stats.latency.snapshot());
        }
        all
    }

    fn failures_of(&self, op: Op) -> BTreeMap<Failure, u64> {
        self.ops[op.index()]
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// "503 x2, transport x1", for warnings.
    fn describe_failures(&self, op: Op) -> String {
        let mut parts: Vec<String> = self
            .failures_of(op)
            .iter()
            .map(|(f, n)| format!("{} x{n}", f.label()))
            .collect();
        if let Some(first) = self.ops[op.index()]
            .first_transport_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            parts.push(format!("first transport error: {first}"));
        }
        parts.join(", ")
    }
}

/// A small fast generator (SplitMix64) for drawing ops, sizes and
/// objects; every task has its own, so drawing takes no lock.
struct Rng(u64);

impl Rng {
    fn seeded(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// What every task of a run shares.
struct Run {
    session: Session,
    /// Container (bucket) names, `bench-<millis>-<random>-<i>`, or the one
    /// the user named.
    containers: Vec<String>,
    /// How many of them exist: they are created in order, and only those
    /// are the cleanup's to delete.
    created: AtomicUsize,
    /// The containers are the run's own, to delete at the end; not so a
    /// container the user named, which may hold other objects.
    owns_containers: bool,
    /// See [`object_name`].
    dirs: u32,
    live: LiveObjects,
    /// Objects whose PUT failed: they may exist all the same, so the
    /// cleanup deletes them too.
    doubtful: Mutex<Vec<ObjectKey>>,
    /// The next object number; every PUT writes a new name.
    next_object: AtomicU64,
    sizes: SizeDist,
}

impl Run {
    fn object_path(&self, key: ObjectKey) -> String {
        let container = self
            .containers
            .get(key.container as usize)
            .map(String::as_str)
            .unwrap_or_default();
        format!("/{container}/{}", object_name(key.number, self.dirs))
    }

    /// Sends one `op`, records how it went, and keeps the live set true.
    async fn perform(&self, op: Op, rng: &mut Rng, rec: &Recorder) -> Step {
        match op {
            Op::Put => {
                let started = Instant::now();
                let number = self.next_object.fetch_add(1, Ordering::Relaxed);
                let key = ObjectKey {
                    container: (number % self.containers.len().max(1) as u64) as u32,
                    number,
                };
                let size = self.sizes.sample(rng.next_u64());
                let result = self.session.put(&self.object_path(key), size).await;
                match classify(result) {
                    Ok(_) => {
                        rec.success(op, started.elapsed(), size);
                        self.live.insert(key);
                    }
                    Err((failure, message)) => {
                        rec.failure(op, failure, message);
                        self.doubtful
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(key);
                    }
                }
            }
            Op::Get | Op::Head | Op::Delete => {
                let mut waited = false;
                let key = loop {
                    match self.live.take(rng.next_u64()) {
                        Take::Got(key) => break key,
                        // Every object is in another request's hands: one
                        // comes back as soon as that request is answered.
                        Take::Busy => {
                            waited = true;
                            tokio::time::sleep(BUSY_RETRY).await;
                        }
                        Take::Empty => return Step::NoObjects,
                    }
                };
                if waited {
                    rec.waited.fetch_add(1, Ordering::Relaxed);
                }
                let started = Instant::now();
                let method = match op {
                    Op::Get => Method::GET,
                    Op::Head => Method::HEAD,
                    _ => Method::DELETE,
                };
                let result = self.session.send(method, &self.object_path(key)).await;
                let gone = match classify(result) {
                    Ok(body_len) => {
                        rec.success(op, started.elapsed(), body_len);
                        op == Op::Delete
                    }
                    Err((failure, message)) => {
                        rec.failure(op, failure, message);
                        // A DELETE answered 404 found it gone all the same.
                        op == Op::Delete && failure == Failure::Status(404)
                    }
                };
                if gone {
                    self.live.forget();
                } else {
                    self.live.release(key);
                }
            }
            Op::List => {
                let started = Instant::now();
                let container = &self.containers
                    [(rng.next_u64() % self.containers.len().max(1) as u64) as usize];
                let path = self.session.listing_path(container, LIST_LIMIT);
                match classify(self.session.send(Method::GET, &path).await) {
                    Ok(body_len) => rec.success(op, started.elapsed(), body_len),
                    Err((failure, message)) => rec.failure(op, failure, message),
                }
            }
        }
        Step::Sent
    }
}

/// What one draw came to.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Sent,
    /// No object exists: nothing sent.
    NoObjects,
}

/// Success with the response body's length, or the failure and, for a
/// transport failure, what went wrong.
fn classify(
    result: anyhow::Result<crate::client::Reply>,
) -> Result<u64, (Failure, Option<String>)> {
    match result {
        Ok(reply) if reply.status.is_success() => Ok(reply.body_len),
        Ok(reply) => Err((Failure::Status(reply.status.as_u16()), None)),
        Err(e) => Err((Failure::Transport, Some(format!("{e:#}")))),
    }
}

/// The rules a task follows: which ops, until when.
#[derive(Clone)]
struct Plan {
    /// `None`: PUTs only (the prefill).
    mix: Option<Mix>,
    stop_after: StopAfter,
    interrupt: Interrupt,
}

/// Runs `concurrency` tasks under `plan`, recording into `rec`; returns
/// the elapsed time and why it ended early, if it did.
async fn drive(
    run: &Arc<Run>,
    rec: &Arc<Recorder>,
    concurrency: usize,
    plan: Plan,
    seed: u64,
) -> (Duration, Option<String>) {
    let started = Instant::now();
    let deadline = match plan.stop_after {
        StopAfter::Duration(d) => Some(started + d),
        StopAfter::Ops(_) => None,
    };
    let tickets = Arc::new(AtomicU64::new(0));
    let ran_out = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency.max(1) {
        let (run, rec, plan) = (run.clone(), rec.clone(), plan.clone());
        let (tickets, ran_out) = (tickets.clone(), ran_out.clone());
        let mut rng = Rng::seeded(seed ^ (worker as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        tasks.spawn(async move {
            loop {
                if plan.interrupt.is_triggered() || ran_out.load(Ordering::Relaxed) {
                    return;
                }
                let over = match plan.stop_after {
                    StopAfter::Ops(n) => tickets.fetch_add(1, Ordering::Relaxed) >= n,
                    StopAfter::Duration(_) => deadline.is_some_and(|d| Instant::now() >= d),
                };
                if over {
                    return;
                }
                let op = match &plan.mix {
                    Some(mix) => mix.pick(rng.next_u64()),
                    None => Op::Put,
                };
                match run.perform(op, &mut rng, &rec).await {
                    Step::Sent => {}
                    Step::NoObjects => {
                        rec.skipped.fetch_add(1, Ordering::Relaxed);
                        let writes = plan.mix.as_ref().is_some_and(|m| m.has(Op::Put));
                        if !writes {
                            // Nothing will ever create one: the run is over.
                            ran_out.store(true, Ordering::Relaxed);
                            return;
                        }
                        tokio::task::yield_now().await;
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let ended_early = if plan.interrupt.is_triggered() {
        Some("interrupted".to_string())
    } else if ran_out.load(Ordering::Relaxed) {
        Some("every object was deleted and the mix writes none".to_string())
    } else {
        None
    };
    (started.elapsed(), ended_early)
}

/// Prints progress every period until `done` fires; a live line is ended
/// with a newline.
async fn show_progress(
    rec: Arc<Recorder>,
    style: ProgressStyle,
    label: &'static str,
    goal: Option<u64>,
    mut done: tokio::sync::oneshot::Receiver<()>,
) {
    if style == ProgressStyle::Quiet {
        return;
    }
    let started = Instant::now();
    let period = style.period();
    let mut ticks = tokio::time::interval_at(started + period, period);
    let (mut last_ok, mut last_at) = (0u64, started);
    let mut printed_live = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut done => break,
        }
        let now = Instant::now();
        let ok = rec.ok_count();
        let failed = rec.failed_count();
        let rate = (ok - last_ok) as f64 / (now - last_at).as_secs_f64().max(1e-9);
        (last_ok, last_at) = (ok, now);
        let latencies = rec.all_latencies();
        let of_goal = goal.map(|g| format!("/{g}")).unwrap_or_default();
        let line = format!(
            "{label} {:>6.1}s {:>9}{of_goal} ok {:>9.0} ops/s {:>6} errors  p50 {:.2} ms  p99 {:.2} ms",
            (now - started).as_secs_f64(),
            ok,
            rate,
            failed,
            latencies.percentile_ms(50.0),
            latencies.percentile_ms(99.0),
        );
        let mut err = std::io::stderr().lock();
        let _ = match style {
            // Carriage return, the line, erase what a longer line left.
            ProgressStyle::Live => write!(err, "\r{line}\x1b[K"),
            _ => writeln!(err, "{line}"),
        };
        let _ = err.flush();
        printed_live |= style == ProgressStyle::Live;
    }
    if printed_live {
        eprintln!();
    }
}

/// Runs `plan` with progress shown; see [`drive`].
async fn drive_with_progress(
    run: &Arc<Run>,
    rec: &Arc<Recorder>,
    config: &MixConfig,
    plan: Plan,
    label: &'static str,
    seed: u64,
) -> (Duration, Option<String>) {
    let goal = match plan.stop_after {
        StopAfter::Ops(n) => Some(n),
        StopAfter::Duration(_) => None,
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let progress = tokio::spawn(show_progress(
        rec.clone(),
        config.progress,
        label,
        goal,
        done_rx,
    ));
    let result = drive(run, rec, config.concurrency, plan, seed).await;
    let _ = done_tx.send(());
    let _ = progress.await;
    result
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

/// A number different in every process: std keys its hashers randomly.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(unix_millis());
    hasher.finish()
}

/// Refuses a run that could do nothing useful.
pub fn check(config: &MixConfig) -> anyhow::Result<()> {
    if config.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if config.containers == 0 {
        bail!("--containers must be at least 1");
    }
    if let Some(name) = &config.container {
        // It goes into request paths as it is, unquoted.
        let unsafe_in_path = |c: char| matches!(c, '/' | '?' | '#' | '%' | ' ') || c.is_control();
        if name.is_empty() || name.contains(unsafe_in_path) {
            bail!("--container {name:?}: the name must be non-empty, without spaces, '/', '?', '#' or '%'");
        }
        if config.containers != 1 {
            bail!("--container names one container: --containers must be 1");
        }
    }
    let acts_on_objects = Op::ALL
        .into_iter()
        .any(|op| op.needs_object() && config.mix.has(op));
    if acts_on_objects && !config.mix.has(Op::Put) && config.prefill == 0 {
        bail!("the mix reads or deletes objects but nothing writes them: add put= to --mix or give --prefill");
    }
    Ok(())
}

/// Runs the mixed workload against `endpoint`: creates the containers,
/// prefills, runs the timed part, and (unless `keep`) deletes everything
/// it wrote, whether or not the run got that far. Errors are for what
/// stops a run from starting (login, creating containers, a prefill that
/// wrote nothing); failed requests during the run are in the summary.
pub async fn run(
    endpoint: &Endpoint,
    config: &MixConfig,
    interrupt: &Interrupt,
) -> anyhow::Result<Summary> {
    check(config)?;
    let session = Session::login(endpoint, config.concurrency).await?;
    // The time orders runs; the random part keeps apart runs started at
    // once against one account, say from several client machines.
    let random = random_u64();
    let prefix = format!("bench-{}-{:06x}", unix_millis(), random & 0xff_ffff);
    let containers = match &config.container {
        Some(name) => vec![name.clone()],
        None => (0..config.containers)
            .map(|i| format!("{prefix}-{i}"))
            .collect(),
    };
    let run = Arc::new(Run {
        session,
        containers,
        created: AtomicUsize::new(0),
        owns_containers: config.container.is_none(),
        dirs: config.dirs,
        live: LiveObjects::default(),
        doubtful: Mutex::new(Vec::new()),
        next_object: AtomicU64::new(config.first_object),
        sizes: config.sizes.clone(),
    });
    // Seeds differ from run to run, so repeated runs do not replay the
    // same sizes and objects.
    let outcome = prepare_and_measure(&run, endpoint, config, interrupt, random).await;
    if config.keep {
        eprintln!(
            "kept {} objects in {} (--keep)",
            run.live.len(),
            describe_containers(&run.containers)
        );
    } else {
        clean_up(&run, config.concurrency, config.progress).await;
    }
    note_reauthentications(&run.session);
    outcome
}

/// Says on stderr how often the store refused a token it gave (each time
/// followed by a new login and the request once more).
pub(crate) fn note_reauthentications(session: &Session) {
    let n = session.reauthentications();
    if n > 0 {
        eprintln!("note: logged in again {n} times after a 401 (the request then sent once more)");
    }
}

fn describe_containers(names: &[String]) -> String {
    match names {
        [one] => one.clone(),
        [first, .., last] => format!("{first} .. {last}"),
        [] => "no containers".to_string(),
    }
}

async fn prepare_and_measure(
    run: &Arc<Run>,
    endpoint: &Endpoint,
    config: &MixConfig,
    interrupt: &Interrupt,
    seed: u64,
) -> anyhow::Result<Summary> {
    for name in &run.containers {
        run.session
            .create_container(name, config.policy.as_deref())
            .await?;
        run.created.fetch_add(1, Ordering::Relaxed);
    }
    if config.prefill > 0 {
        let rec = Arc::new(Recorder::default());
        if config.progress != ProgressStyle::Quiet {
            eprintln!(
                "prefill: writing {} objects of {}",
                config.prefill, config.sizes
            );
        }
        let plan = Plan {
            mix: None,
            stop_after: StopAfter::Ops(config.prefill),
            interrupt: interrupt.clone(),
        };
        let (took, _) = drive_with_progress(run, &rec, config, plan, "prefill", seed).await;
        let written = rec.ok_count();
        let failed = rec.failed_count();
        if written == 0 && !interrupt.is_triggered() {
            bail!(
                "prefill: no PUT succeeded ({})",
                rec.describe_failures(Op::Put)
            );
        }
        if failed > 0 {
            eprintln!(
                "warning: prefill: {failed} of {} PUTs failed ({})",
                config.prefill,
                rec.describe_failures(Op::Put)
            );
        }
        if config.progress != ProgressStyle::Quiet {
            eprintln!("prefill: {written} objects in {:.1} s", took.as_secs_f64());
        }
    }
    let rec = Arc::new(Recorder::default());
    let plan = Plan {
        mix: Some(config.mix.clone()),
        stop_after: config.stop_after,
        interrupt: interrupt.clone(),
    };
    let (took, ended_early) = if interrupt.is_triggered() {
        (Duration::ZERO, Some("interrupted".to_string()))
    } else {
        drive_with_progress(run, &rec, config, plan, "run", seed.rotate_left(17)).await
    };
    Ok(summarize(&rec, endpoint, config, took, ended_early))
}

fn summarize(
    rec: &Recorder,
    endpoint: &Endpoint,
    config: &MixConfig,
    took: Duration,
    ended_early: Option<String>,
) -> Summary {
    let elapsed = took.as_secs_f64();
    let mut ops = Vec::new();
    let mut all_latencies = Histogram::default();
    let mut all_failures: BTreeMap<String, u64> = BTreeMap::new();
    let (mut all_ok, mut all_bytes) = (0, 0);
    let mut first_transport_error = None;
    for op in config.mix.ops() {
        let stats = &rec.ops[op.index()];
        let latencies = stats.latency.snapshot();
        let failures: BTreeMap<String, u64> = rec
            .failures_of(op)
            .into_iter()
            .map(|(f, n)| (f.label(), n))
            .collect();
        for (label, n) in &failures {
            *all_failures.entry(label.clone()).or_default() += n;
        }
        let first = stats
            .first_transport_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        first_transport_error = first_transport_error.or(first.clone());
        let (ok, bytes) = (
            stats.ok.load(Ordering::Relaxed),
            stats.bytes.load(Ordering::Relaxed),
        );
        all_latencies.merge(&latencies);
        all_ok += ok;
        all_bytes += bytes;
        ops.push((
            op,
            OpSummary::new(ok, bytes, &latencies, failures, first, elapsed),
        ));
    }
    Summary {
        api: endpoint.api.name().to_string(),
        elapsed_secs: elapsed,
        concurrency: config.concurrency,
        containers: config.containers,
        mix: config.mix.to_string(),
        sizes: config.sizes.to_string(),
        prefill: config.prefill,
        ops,
        total: OpSummary::new(
            all_ok,
            all_bytes,
            &all_latencies,
            all_failures,
            first_transport_error,
            elapsed,
        ),
        skipped: rec.skipped.load(Ordering::Relaxed),
        waited: rec.waited.load(Ordering::Relaxed),
        ended_early,
    }
}

/// Deletes every object the run wrote (or may have), then its
/// containers. Failures are warnings: the figures are already in.
async fn clean_up(run: &Arc<Run>, concurrency: usize, progress: ProgressStyle) {
    let created = &run.containers[..run.created.load(Ordering::Relaxed)];
    if created.is_empty() {
        // Nothing was created, so nothing was written either.
        return;
    }
    let mut keys = run.live.drain();
    keys.extend(
        run.doubtful
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..),
    );
    let paths: Arc<Vec<String>> = Arc::new(keys.iter().map(|k| run.object_path(*k)).collect());
    let next = Arc::new(AtomicU64::new(0));
    let left = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (run, paths, next, left) = (run.clone(), paths.clone(), next.clone(), left.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(path) = paths.get(i) else { return };
                let gone = match run.session.send(Method::DELETE, path).await {
                    Ok(reply) => reply.status.is_success() || reply.status == StatusCode::NOT_FOUND,
                    Err(_) => false,
                };
                if !gone {
                    left.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let left = left.load(Ordering::Relaxed);
    if left > 0 {
        eprintln!("warning: cleanup: {left} objects could not be deleted");
    }
    if !run.owns_containers {
        if progress != ProgressStyle::Quiet {
            eprintln!(
                "cleanup: deleted {} objects; left {} in place (--container)",
                paths.len() as u64 - left,
                describe_containers(created)
            );
        }
        return;
    }
    let mut all_deleted = true;
    for name in created {
        if let Err(e) = run.session.delete_container(name).await {
            eprintln!("warning: cleanup: {e:#}");
            all_deleted = false;
        }
    }
    if all_deleted && progress != ProgressStyle::Quiet {
        eprintln!(
            "cleanup: deleted {} objects and {}",
            paths.len() as u64 - left,
            describe_containers(created)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(number: u64) -> ObjectKey {
        ObjectKey {
            container: 0,
            number,
        }
    }

    #[test]
    fn a_taken_object_is_seen_by_no_other_request() {
        let live = LiveObjects::default();
        assert_eq!(live.take(0), Take::Empty);
        live.insert(key(1));
        live.insert(key(2));
        let Take::Got(first) = live.take(7) else {
            panic!("nothing taken")
        };
        let Take::Got(second) = live.take(7) else {
            panic!("nothing taken")
        };
        assert_ne!(first, second);
        // Both in use: busy, not empty.
        assert_eq!(live.take(0), Take::Busy);
        live.release(first);
        assert_eq!(live.take(123), Take::Got(first));
        live.forget();
        live.forget();
        assert_eq!(live.take(0), Take::Empty);
        assert_eq!(live.len(), 0);
    }

    #[test]
    fn the_live_set_drains_for_cleanup() {
        let live = LiveObjects::default();
        for n in 0..5 {
            live.insert(key(n));
        }
        assert_eq!(live.len(), 5);
        let mut drained: Vec<u64> = live.drain().iter().map(|k| k.number).collect();
        drained.sort_unstable();
        assert_eq!(drained, [0, 1, 2, 3, 4]);
        assert_eq!(live.len(), 0);
    }

    #[test]
    fn failures_are_tallied_by_status_with_the_first_transport_message() {
        let rec = Recorder::default();
        rec.failure(Op::Get, Failure::Status(404), None);
        rec.failure(Op::Get, Failure::Status(404), None);
        rec.failure(Op::Get, Failure::Transport, Some("refused".into()));
        rec.failure(Op::Get, Failure::Transport, Some("reset".into()));
        rec.success(Op::Put, Duration::from_millis(2), 4096);
        assert_eq!((rec.ok_count(), rec.failed_count()), (1, 4));
        assert_eq!(
            rec.describe_failures(Op::Get),
            "404 x2, transport x2, first transport error: refused"
        );
        assert_eq!(rec.all_latencies().count(), 1);
    }

    #[test]
    fn rngs_spread_their_draws() {
        let mut rng = Rng::seeded(42);
        let mut buckets = [0u32; 10];
        for _ in 0..10_000 {
            buckets[(rng.next_u64() % 10) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|b| (800..1200).contains(b)),
            "{buckets:?}"
        );
    }

    fn config(mix: &str, prefill: u64) -> MixConfig {
        MixConfig {
            mix: mix.parse().unwrap(),
            sizes: SizeDist::fixed(10),
            concurrency: 4,
            stop_after: StopAfter::Ops(10),
            prefill,
            containers: 1,
            container: None,
            first_object: 0,
            dirs: 0,
            policy: None,
            keep: false,
            progress: ProgressStyle::Quiet,
        }
    }

    #[test]
    fn names_are_flat_or_spread_over_sorted_directories() {
        assert_eq!(object_name(42, 0), "obj-0000000042");
        assert_eq!(object_name(1_234_567, 1000), "d567/obj-0001234567");
        assert_eq!(object_name(999, 1000), "d999/obj-0000000999");
        assert_eq!(object_name(1000, 1000), "d000/obj-0000001000");
        assert_eq!(object_name(13, 10), "d3/obj-0000000013");
        assert_eq!(object_name(5, 1), "d0/obj-0000000005");
        assert_eq!(object_name(1000, 1001), "d1000/obj-0000001000");
        assert_eq!(object_name(7, 1001), "d0007/obj-0000000007");
        // Names sort by directory, then by number within it, so that a
        // marker `d900/` lies 90% through 1,000 directories.
        let mut names: Vec<String> = (0..3000).map(|n| object_name(n, 1000)).collect();
        names.sort();
        assert_eq!(names[0], "d000/obj-0000000000");
        assert_eq!(names[2], "d000/obj-0000002000");
        assert_eq!(names[2700], "d900/obj-0000000900");
        assert_eq!(names.iter().filter(|n| n.as_str() > "d900/").count(), 300);
    }

    #[test]
    fn a_named_container_is_one_plain_name() {
        let named = |name: &str| MixConfig {
            container: Some(name.to_string()),
            ..config("put=1", 0)
        };
        assert!(check(&named("scale-1")).is_ok());
        for bad in ["", "a/b", "a b", "a?b", "a%2F", "a#b", "a\nb"] {
            assert!(check(&named(bad)).is_err(), "{bad:?} was accepted");
        }
        let mut two = named("scale-1");
        two.containers = 2;
        assert!(check(&two).is_err());
    }

    #[test]
    fn the_default_prefill_gives_each_task_objects_within_a_budget() {
        let mix: Mix = "put=20,get=70,delete=10".parse().unwrap();
        assert_eq!(default_prefill(&mix, &SizeDist::fixed(4096), 32), 128);
        assert_eq!(default_prefill(&mix, &SizeDist::fixed(64 << 20), 32), 16);
        assert_eq!(default_prefill(&mix, &SizeDist::fixed(4 << 30), 8), 1);
        let writes_and_lists: Mix = "put=1,list=1".parse().unwrap();
        assert_eq!(
            default_prefill(&writes_and_lists, &SizeDist::fixed(0), 32),
            0
        );
    }

    #[test]
    fn a_mix_that_reads_what_nothing_writes_is_refused() {
        assert!(check(&config("get=1", 0)).is_err());
        assert!(check(&config("get=1", 10)).is_ok());
        assert!(check(&config("put=1,get=9", 0)).is_ok());
        assert!(check(&config("list=1", 0)).is_ok());
        let mut none = config("put=1", 0);
        none.concurrency = 0;
        assert!(check(&none).is_err());
    }
}
