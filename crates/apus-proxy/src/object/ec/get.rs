//! GET of an erasure-coded object, as Swift's `ECObjectController` does
//! it.
//!
//! **Gathering.** k nodes are asked first (primaries, then handoffs, with
//! `concurrent_gets` one more primary each `concurrency_timeout`), and one
//! more whenever an answer is bad or the best timestamp still lacks more
//! fragments than are in flight, up to `2 * replicas - k` extra requests.
//! Answers are grouped by the timestamp of their data
//! (`X-Backend-Data-Timestamp`); a timestamp is durable once any node
//! reports it in `X-Backend-Durable-Timestamp`. The best group is the
//! durable one with k distinct fragment indexes, else the one nearest to
//! it (newest first), unless a newer tombstone hides it. Every request
//! carries `X-Backend-Fragment-Preferences` naming the groups seen so far
//! with the indexes they already have, so that nodes holding several
//! fragments offer the missing ones; after k nodes, a node that reported
//! (`X-Backend-Fragments`) an index the best group lacks is asked again.
//! Without k fragments the answer is Swift's: the bad answers' best
//! response (404s without a timestamp and answers no newer than a durable
//! group do not count), 404 for fragments that are only non-durable, 503
//! when nothing decides.
//!
//! **Ranges.** The client's first range is widened to whole segments and
//! sent to the nodes as the matching byte range of the fragment archives;
//! once the object's length is known every range is resolved and served
//! segment by segment, several as `multipart/byteranges`.
//!
//! **Failures while streaming.** Each segment is decoded from k fragments
//! read exactly from k sources. A source that errors, times out, ends
//! early or sends a fragment the codec refuses (a corrupt header) is
//! dropped for good and replaced by an unused fragment of the same
//! timestamp and ETag: a spare answer from the gathering, else a node not
//! asked yet (a range request starting at the current segment). A source
//! positioned past or far before the next segment is asked again for the
//! range it must serve. When fewer than k sources remain the body is cut
//! off: the client gets every byte or a broken connection, never wrong
//! bytes. The proxy holds one fragment per source and one decoded
//! segment.

use std::collections::BTreeMap;
use std::io;

use apus_core::policy::EcParams;
use apus_core::range::{
    content_range_value, multipart_body_length, multipart_part_header, multipart_terminator,
    ByteRangeSpec, Range,
};
use apus_core::Timestamp;
use apus_ec::{EcError, EcScheme};
use apus_http::Body;
use apus_proto::ec as pec;
use apus_ring::Device;
use bytes::{Buf, Bytes};
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use md5::{Digest, Md5};

use super::{scheme_of, strip_ec_headers, unavailable};
use crate::app::Ctx;
use crate::backend::{
    backend_path, best_response, buffer_response, quorum_size, NodePlan, NodeResponse, NodeSender,
};
use crate::config::Policy;
use crate::object::{clean_content_type, HOP_HEADERS};
use crate::service::{error_response, header_str, set_header, Req, Resp};

/// Swift's `rebalance_missing_suppression_count` default: this many 404s
/// without a timestamp are ignored when choosing the error answer.
const REBALANCE_MISSING_SUPPRESSION: usize = 1;

/// A source further than this many fragments before the one wanted is
/// asked again rather than read through.
const MAX_SKIP_FRAGMENTS: u64 = 4;

/// Where a node came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Primary,
    Handoff,
}

/// The data timestamp of a fragment answer.
fn data_timestamp(h: &HeaderMap) -> Option<Timestamp> {
    header_str(h, "x-backend-data-timestamp")
        .or_else(|| header_str(h, "x-backend-timestamp"))
        .or_else(|| header_str(h, "x-timestamp"))
        .and_then(|t| Timestamp::parse(t.trim()).ok())
}

fn header_timestamp(h: &HeaderMap, name: &str) -> Option<Timestamp> {
    header_str(h, name).and_then(|t| Timestamp::parse(t.trim()).ok())
}

fn ec_etag(h: &HeaderMap) -> Option<String> {
    header_str(h, pec::X_OBJECT_SYSMETA_EC_ETAG).map(str::to_string)
}

/// `bytes a-b/total` as the archive offsets `[a, b + 1)`.
fn parse_content_range(h: &HeaderMap) -> Option<(u64, u64)> {
    let v = header_str(h, "content-range")?.trim();
    let rest = v.strip_prefix("bytes ")?;
    let (span, _) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b: u64 = b.trim().parse().ok()?;
    (a <= b).then_some((a, b + 1))
}

/// The fragment archives' layout for an object of `length` bytes.
#[derive(Clone, Copy, Debug)]
struct Layout {
    length: u64,
    segment_size: u64,
    /// The fragment of a whole segment, header included.
    fragment_size: u64,
    /// The fragment of the last segment.
    last_fragment_size: u64,
    segments: u64,
}

impl Layout {
    fn new(scheme: &EcScheme, segment_size: u64, length: u64) -> Layout {
        let segments = length.div_ceil(segment_size);
        let last = length - segments.saturating_sub(1) * segment_size;
        Layout {
            length,
            segment_size,
            fragment_size: scheme.fragment_size(segment_size),
            last_fragment_size: scheme.fragment_size(last),
            segments,
        }
    }

    fn segment_len(&self, s: u64) -> u64 {
        self.segment_size.min(self.length - s * self.segment_size)
    }

    fn fragment_offset(&self, s: u64) -> u64 {
        s * self.fragment_size
    }

    fn fragment_len(&self, s: u64) -> u64 {
        if s + 1 == self.segments {
            self.last_fragment_size
        } else {
            self.fragment_size
        }
    }

    /// The archive offset just past segment `s`'s fragment.
    fn fragment_end(&self, s: u64) -> u64 {
        self.fragment_offset(s) + self.fragment_len(s)
    }
}

/// Swift's conversion of a client range spec into the fragment archive
/// range that holds its whole segments (the object's length is not known
/// yet): `Range` for the first requests.
fn fragment_range(spec: ByteRangeSpec, segment_size: u64, fragment_size: u64) -> String {
    match (spec.start, spec.end) {
        (Some(start), end) => {
            let first = start / segment_size * fragment_size;
            match end {
                Some(end) => {
                    let last = (end / segment_size + 1) * fragment_size - 1;
                    format!("bytes={first}-{last}")
                }
                None => format!("bytes={first}-"),
            }
        }
        // The last n bytes: one segment more than they span, so that a
        // short last segment cannot leave the first one cut.
        (None, Some(n)) => {
            let segments = n.div_ceil(segment_size) + 1;
            format!("bytes=-{}", segments.saturating_mul(fragment_size))
        }
        (None, None) => String::new(),
    }
}

/// One answer to a fragment GET.
struct Answer {
    dev: Device,
    role: Role,
    resp: Option<Response<Body>>,
}

/// A good answer kept for decoding.
struct Getter {
    dev: Device,
    index: u32,
    resp: Response<Body>,
}

/// Good answers of one data timestamp (Swift's `ECGetResponseBucket`).
#[derive(Default)]
struct Bucket {
    durable: bool,
    headers: Option<HeaderMap>,
    /// The answers by fragment index (the first of each is used).
    gets: BTreeMap<u32, Vec<Getter>>,
    /// Nodes that reported holding an index of this timestamp.
    alt_nodes: BTreeMap<u32, Vec<Device>>,
}

/// Bad answers of one status.
#[derive(Default)]
struct BadBucket {
    /// The newest `X-Backend-Timestamp` they named (tombstones).
    timestamp: Option<Timestamp>,
    answers: Vec<NodeResponse>,
}

/// The group a GET answers from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Best {
    Good(Timestamp),
    Bad(u16),
    /// No answer at all, or only 404s.
    Nothing,
}

/// All answers of a GET (Swift's `ECGetResponseCollection`).
struct Collection {
    k: usize,
    m: usize,
    replicas: usize,
    buckets: BTreeMap<Timestamp, Bucket>,
    bad: BTreeMap<u16, BadBucket>,
    /// Nodes asked so far.
    asked: usize,
}

impl Collection {
    fn shortfall_of(&self, durable: bool, status: Option<u16>, count: usize) -> usize {
        if durable || status == Some(416) {
            return self.k.saturating_sub(count);
        }
        let alt = self.replicas.saturating_sub(count).min(self.m);
        1.max(self.k.saturating_sub(count)).max(alt)
    }

    fn shortfall(&self, b: &Bucket) -> usize {
        self.shortfall_of(b.durable, Some(200), b.gets.len())
    }

    fn shortfall_with_alts(&self, b: &Bucket) -> usize {
        let alts = b
            .alt_nodes
            .keys()
            .filter(|i| !b.gets.contains_key(i))
            .count();
        self.k.saturating_sub(b.gets.len() + alts)
    }

    /// Timestamps, best first.
    fn sorted(&self) -> Vec<Timestamp> {
        let mut keys: Vec<_> = self
            .buckets
            .iter()
            .map(|(ts, b)| {
                (
                    b.durable,
                    self.shortfall(b) == 0,
                    std::cmp::Reverse(self.shortfall_with_alts(b)),
                    *ts,
                )
            })
            .collect();
        keys.sort_by(|a, b| b.cmp(a));
        keys.into_iter().map(|k| k.3).collect()
    }

    fn best(&self) -> Best {
        let tombstone = self.bad.get(&404).and_then(|b| b.timestamp);
        for ts in self.sorted() {
            if tombstone.is_some_and(|t| ts < t) {
                continue;
            }
            return Best::Good(ts);
        }
        self.least_bad()
    }

    fn least_bad(&self) -> Best {
        self.bad
            .iter()
            .filter(|(status, _)| **status != 404)
            .map(|(status, b)| {
                (
                    self.shortfall_of(false, Some(*status), b.answers.len()),
                    *status,
                )
            })
            .min()
            .map_or(Best::Nothing, |(_, status)| Best::Bad(status))
    }

    fn best_shortfall(&self, best: Best) -> usize {
        match best {
            Best::Good(ts) => self.buckets.get(&ts).map_or(self.k, |b| self.shortfall(b)),
            Best::Bad(status) => self.bad.get(&status).map_or(self.k, |b| {
                self.shortfall_of(false, Some(status), b.answers.len())
            }),
            Best::Nothing => self.shortfall_of(false, None, 0),
        }
    }

    fn total_shortfall(&self) -> usize {
        let best = self.best_shortfall(self.best());
        best.min(self.best_shortfall(self.least_bad()))
    }

    fn satisfied(&self) -> bool {
        match self.best() {
            Best::Good(ts) => self
                .buckets
                .get(&ts)
                .is_some_and(|b| b.durable && self.shortfall(b) == 0),
            _ => false,
        }
    }

    /// `X-Backend-Fragment-Preferences`: every timestamp seen, best first,
    /// with the indexes it already has.
    fn preferences(&self) -> String {
        let prefs: Vec<serde_json::Value> = self
            .sorted()
            .into_iter()
            .map(|ts| {
                let exclude: Vec<u32> = self
                    .buckets
                    .get(&ts)
                    .map(|b| b.gets.keys().copied().collect())
                    .unwrap_or_default();
                serde_json::json!({"timestamp": ts.internal(), "exclude": exclude})
            })
            .collect();
        serde_json::Value::Array(prefs).to_string()
    }

    /// A node that reported an index the best group lacks, once k nodes
    /// have been asked (Swift's `provide_alternate_node`).
    fn take_alternate(&mut self) -> Option<Device> {
        if self.asked <= self.k {
            return None;
        }
        let Best::Good(ts) = self.best() else {
            return None;
        };
        let shortfall = self.buckets.get(&ts).map(|b| self.shortfall(b))?;
        let bucket = self.buckets.get_mut(&ts)?;
        if shortfall == 0 || !bucket.durable {
            return None;
        }
        let wanted: Vec<u32> = bucket
            .alt_nodes
            .keys()
            .filter(|i| !bucket.gets.contains_key(i))
            .copied()
            .collect();
        for index in wanted {
            if let Some(nodes) = bucket.alt_nodes.get_mut(&index) {
                if !nodes.is_empty() {
                    return Some(nodes.remove(0));
                }
            }
        }
        None
    }

    fn has_alternate(&self) -> bool {
        if self.asked <= self.k {
            return false;
        }
        let Best::Good(ts) = self.best() else {
            return false;
        };
        self.buckets.get(&ts).is_some_and(|b| {
            b.durable
                && self.shortfall(b) > 0
                && b.alt_nodes
                    .iter()
                    .any(|(i, n)| !b.gets.contains_key(i) && !n.is_empty())
        })
    }

    /// Files an answer; returns whether it was a good source (a fragment,
    /// or a 416).
    async fn add(&mut self, answer: Answer, width: u32) -> bool {
        let Some(resp) = answer.resp else {
            // No answer: Swift's getter without a status, which never
            // decides the error answer.
            return false;
        };
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            let ts = header_timestamp(resp.headers(), "x-backend-timestamp");
            // A handoff's 404 or 5xx says nothing unless it names a
            // timestamp (the object was there and deleted).
            if answer.role == Role::Handoff && (status == 404 || status >= 500) && ts.is_none() {
                drop(resp);
                return false;
            }
            let node = buffer_response(resp).await;
            let bad = self.bad.entry(node.status).or_default();
            if ts.is_some() {
                bad.timestamp = bad.timestamp.max(ts);
            }
            bad.answers.push(node);
            return status == 416;
        }
        let h = resp.headers();
        let (Some(ts), Some(index)) = (
            data_timestamp(h),
            header_str(h, pec::X_OBJECT_SYSMETA_EC_FRAG_INDEX)
                .and_then(|i| pec::parse_frag_index(i, width)),
        ) else {
            tracing::warn!(device = %answer.dev.device, "EC fragment answer without a timestamp or index");
            return false;
        };
        let durable_ts = header_timestamp(h, "x-backend-durable-timestamp").or_else(|| {
            // An object server that reports no data timestamp predates
            // durability reporting: its fragment counts as durable.
            (!h.contains_key("x-backend-data-timestamp")).then_some(ts)
        });
        let fragments: Vec<(Timestamp, Vec<u32>)> = header_str(h, pec::X_BACKEND_FRAGMENTS)
            .and_then(|v| serde_json::from_str::<BTreeMap<String, Vec<u32>>>(v).ok())
            .map(|m| {
                m.into_iter()
                    .filter_map(|(t, idx)| Timestamp::parse(&t).ok().map(|t| (t, idx)))
                    .collect()
            })
            .unwrap_or_default();
        let etag = ec_etag(h);
        let bucket = self.buckets.entry(ts).or_default();
        match &bucket.headers {
            None => bucket.headers = Some(h.clone()),
            Some(first) if ec_etag(first) != etag => {
                // Fragments of one timestamp with different ETags never
                // decode together.
                tracing::error!(device = %answer.dev.device, "EC fragment answer: ETag mismatch");
                return true;
            }
            Some(_) => {}
        }
        bucket.gets.entry(index).or_default().push(Getter {
            dev: answer.dev.clone(),
            index,
            resp,
        });
        for (t, indexes) in fragments {
            let b = self.buckets.entry(t).or_default();
            for i in indexes.into_iter().filter(|i| *i < width) {
                b.alt_nodes.entry(i).or_default().push(answer.dev.clone());
            }
        }
        if let Some(d) = durable_ts {
            self.buckets.entry(d).or_default().durable = true;
        }
        true
    }
}

/// The nodes a GET may ask, in Swift's order.
struct Nodes {
    list: Vec<(Device, Role)>,
    next: usize,
}

impl Nodes {
    fn new(plan: &NodePlan) -> Nodes {
        let mut list: Vec<(Device, Role)> = Vec::new();
        list.extend(plan.primaries.iter().map(|d| (d.clone(), Role::Primary)));
        list.extend(plan.handoffs.iter().map(|d| (d.clone(), Role::Handoff)));
        list.extend(plan.limited.iter().map(|d| (d.clone(), Role::Primary)));
        Nodes { list, next: 0 }
    }

    fn take(&mut self) -> Option<(Device, Role)> {
        let n = self.list.get(self.next).cloned();
        if n.is_some() {
            self.next += 1;
        }
        n
    }

    fn primaries_left(&self, plan: &NodePlan) -> bool {
        self.next < plan.primaries.len()
    }

    fn left(&self) -> bool {
        self.next < self.list.len()
    }

    fn rest(self) -> Vec<(Device, Role)> {
        self.list.into_iter().skip(self.next).collect()
    }
}

/// Everything a streaming GET needs after the handler returned.
struct Fetcher {
    sender: NodeSender,
    partition: u32,
    path: String,
    headers: HeaderMap,
    timestamp: Timestamp,
    etag: Option<String>,
    width: u32,
}

impl Fetcher {
    /// Asks `dev` for the fragment archive bytes `[from, to)` of the chosen
    /// timestamp, another index than those in `exclude`, or `index` when
    /// given.
    async fn open(
        &self,
        dev: &Device,
        index: Option<u32>,
        exclude: &[u32],
        from: u64,
        to: u64,
    ) -> Option<Source> {
        let exclude: Vec<u32> = match index {
            Some(i) => (0..self.width).filter(|x| *x != i).collect(),
            None => exclude.to_vec(),
        };
        let mut headers = self.headers.clone();
        let prefs =
            serde_json::json!([{"timestamp": self.timestamp.internal(), "exclude": exclude}]);
        set_header(
            &mut headers,
            pec::X_BACKEND_FRAGMENT_PREFERENCES,
            &prefs.to_string(),
        );
        set_header(
            &mut headers,
            "range",
            &format!("bytes={}-{}", from, to.saturating_sub(1)),
        );
        let path = backend_path(dev, self.partition, &self.path, None);
        let resp = self.sender.send(dev, Method::GET, &path, headers).await?;
        let h = resp.headers();
        let got = header_str(h, pec::X_OBJECT_SYSMETA_EC_FRAG_INDEX)
            .and_then(|i| pec::parse_frag_index(i, self.width));
        let fits = resp.status().is_success()
            && data_timestamp(h) == Some(self.timestamp)
            && ec_etag(h) == self.etag
            && got.is_some_and(|g| index.map_or(!exclude.contains(&g), |i| i == g));
        if !fits {
            return None;
        }
        let (at, end) = match resp.status() {
            StatusCode::PARTIAL_CONTENT => parse_content_range(h)?,
            _ => (0, u64::MAX),
        };
        Some(Source {
            dev: dev.clone(),
            index: got?,
            body: resp.into_body(),
            at,
            end,
            buf: Bytes::new(),
        })
    }
}

/// One fragment archive being read.
struct Source {
    dev: Device,
    index: u32,
    body: Body,
    /// The archive offset of `buf`'s first byte.
    at: u64,
    /// The archive offset past the last byte the answer holds.
    end: u64,
    buf: Bytes,
}

impl Source {
    fn from_getter(g: Getter) -> Source {
        let h = g.resp.headers();
        let (at, end) = match g.resp.status() {
            StatusCode::PARTIAL_CONTENT => parse_content_range(h).unwrap_or((u64::MAX, 0)),
            _ => (0, u64::MAX),
        };
        Source {
            dev: g.dev,
            index: g.index,
            body: g.resp.into_body(),
            at,
            end,
            buf: Bytes::new(),
        }
    }

    /// Whether the archive bytes `[off, off + len)` can be read from here.
    fn can_serve(&self, off: u64, len: u64, layout: &Layout) -> bool {
        off >= self.at
            && off + len <= self.end
            && off - self.at <= MAX_SKIP_FRAGMENTS * layout.fragment_size
    }

    /// Reads the archive bytes `[off, off + len)` (see
    /// [`Source::can_serve`]).
    async fn read(&mut self, off: u64, len: u64) -> io::Result<Vec<u8>> {
        let short = || io::Error::new(io::ErrorKind::UnexpectedEof, "fragment archive ended early");
        let Ok(len) = usize::try_from(len) else {
            return Err(short());
        };
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            if self.buf.is_empty() {
                match self.body.frame().await {
                    None => return Err(short()),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            self.buf = data;
                        }
                        continue;
                    }
                }
            }
            if self.at < off {
                let skip = (off - self.at).min(self.buf.len() as u64) as usize;
                self.buf.advance(skip);
                self.at += skip as u64;
                continue;
            }
            let take = (len - out.len()).min(self.buf.len());
            out.extend_from_slice(&self.buf[..take]);
            self.buf.advance(take);
            self.at += take as u64;
        }
        Ok(out)
    }
}

/// Decodes segments from k sources, replacing those that fail.
struct Reader {
    scheme: EcScheme,
    layout: Layout,
    fetcher: Fetcher,
    active: Vec<Source>,
    /// Good answers of the chosen timestamp not in use.
    spares: Vec<Getter>,
    /// Nodes not asked yet.
    unused: Vec<(Device, Role)>,
    /// Indexes whose source failed: never used again.
    failed: Vec<(String, u32)>,
    /// The archive offset the current client range's requests end at.
    want_end: u64,
    /// The last segment decoded, for ranges sharing it.
    last: Option<(u64, Bytes)>,
}

fn bad_data(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// The source position an error names, when the codec blames one
/// fragment.
fn blamed(e: &EcError) -> Option<usize> {
    match e {
        EcError::FragmentTooShort { position, .. }
        | EcError::BadMagic { position, .. }
        | EcError::MissingLibraryVersion { position }
        | EcError::BadMetadataChecksum { position }
        | EcError::IndexOutOfRange { position, .. }
        | EcError::BackendMismatch { position, .. }
        | EcError::MalformedFragment { position, .. }
        | EcError::InconsistentFragments { position, .. }
        | EcError::PayloadChecksumMismatch { position, .. } => Some(*position),
        _ => None,
    }
}

impl Reader {
    fn fail(&mut self, source: Source, why: &str) {
        tracing::warn!(device = %source.dev.device, index = source.index, why, "EC object GET: dropping a fragment source");
        self.failed.push((source.dev.device.clone(), source.index));
    }

    fn is_failed(&self, dev: &Device, index: u32) -> bool {
        self.failed
            .iter()
            .any(|(d, i)| *d == dev.device && *i == index)
    }

    /// Fills the active set back up to k sources able to serve segment
    /// `s`; `false` when no more can be found.
    async fn refill(&mut self, s: u64) -> bool {
        let off = self.layout.fragment_offset(s);
        let len = self.layout.fragment_len(s);
        let to = self.want_end.max(off + len);
        // Sources in the wrong place are asked again for this range.
        let mut i = 0;
        while i < self.active.len() {
            if self.active[i].can_serve(off, len, &self.layout) {
                i += 1;
                continue;
            }
            let old = self.active.swap_remove(i);
            match self
                .fetcher
                .open(&old.dev, Some(old.index), &[], off, to)
                .await
            {
                Some(new) if new.can_serve(off, len, &self.layout) => self.active.push(new),
                _ => self.fail(old, "could not be asked again"),
            }
        }
        let k = self.scheme.k();
        while self.active.len() < k {
            let in_use: Vec<u32> = self.active.iter().map(|s| s.index).collect();
            // A spare answer first, then a node not asked yet.
            let spare = self
                .spares
                .iter()
                .position(|g| !in_use.contains(&g.index) && !self.is_failed(&g.dev, g.index));
            if let Some(p) = spare {
                let g = self.spares.swap_remove(p);
                let src = Source::from_getter(g);
                if src.can_serve(off, len, &self.layout) {
                    self.active.push(src);
                } else if let Some(new) = self
                    .fetcher
                    .open(&src.dev, Some(src.index), &[], off, to)
                    .await
                    .filter(|n| n.can_serve(off, len, &self.layout))
                {
                    self.active.push(new);
                } else {
                    self.fail(src, "spare could not be positioned");
                }
                continue;
            }
            if self.unused.is_empty() {
                return false;
            }
            let (dev, _) = self.unused.remove(0);
            let mut exclude = in_use;
            exclude.extend(
                self.failed
                    .iter()
                    .filter(|(d, _)| *d == dev.device)
                    .map(|(_, i)| *i),
            );
            if let Some(new) = self.fetcher.open(&dev, None, &exclude, off, to).await {
                if new.can_serve(off, len, &self.layout) && !self.is_failed(&dev, new.index) {
                    self.active.push(new);
                }
            }
        }
        true
    }

    /// Segment `s` of the object.
    async fn segment(&mut self, s: u64) -> io::Result<Bytes> {
        if let Some((n, data)) = &self.last {
            if *n == s {
                return Ok(data.clone());
            }
        }
        let off = self.layout.fragment_offset(s);
        let len = self.layout.fragment_len(s);
        let expected = self.layout.segment_len(s);
        loop {
            if !self.refill(s).await {
                return Err(io::Error::other(
                    "not enough fragment sources left to decode the object",
                ));
            }
            let reads = futures_util::future::join_all(
                self.active.iter_mut().map(|src| src.read(off, len)),
            )
            .await;
            let mut fragments = Vec::with_capacity(reads.len());
            let mut broken = Vec::new();
            for (i, r) in reads.into_iter().enumerate() {
                match r {
                    Ok(f) => fragments.push(f),
                    Err(e) => {
                        tracing::warn!(error = %e, "EC object GET: fragment read failed");
                        broken.push(i);
                    }
                }
            }
            if !broken.is_empty() {
                for i in broken.into_iter().rev() {
                    let src = self.active.swap_remove(i);
                    self.fail(src, "read failed");
                }
                // The others' fragments of this segment are read already:
                // they are asked again from this segment on.
                continue;
            }
            match self.scheme.decode(&fragments) {
                Ok(segment) if segment.len() as u64 == expected => {
                    let segment = Bytes::from(segment);
                    self.last = Some((s, segment.clone()));
                    return Ok(segment);
                }
                Ok(_) => return Err(bad_data("decoded segment of the wrong length")),
                Err(e) => match blamed(&e).filter(|p| *p < self.active.len()) {
                    Some(p) => {
                        let src = self.active.swap_remove(p);
                        self.fail(src, "fragment refused by the decoder");
                    }
                    None => return Err(bad_data(e)),
                },
            }
        }
    }
}

impl Ctx<'_> {
    /// GET of an EC object (HEAD reads one node's metadata).
    pub(in crate::object) async fn ec_get_object(
        &self,
        req: Req,
        policy: &Policy,
        ec: &EcParams,
    ) -> Resp {
        match self.ec_get_fragments(&req, policy, ec, true).await {
            // The archives had nothing in the fragment range although the
            // object has something in the client's (an empty object,
            // which is answered whole): asked again without a range.
            Err(Retry) => match self.ec_get_fragments(&req, policy, ec, false).await {
                Ok(resp) => resp,
                Err(Retry) => unavailable(),
            },
            Ok(resp) => resp,
        }
    }

    async fn ec_get_fragments(
        &self,
        req: &Req,
        policy: &Policy,
        ec: &EcParams,
        ranged: bool,
    ) -> Result<Resp, Retry> {
        let scheme = match scheme_of(ec) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "EC policy with an unusable code");
                return Ok(unavailable());
            }
        };
        let k = scheme.k();
        let width = ec.unique_fragments();
        let plan = self.object_plan(policy);
        let mut headers = self.object_headers(req, None, policy);
        headers.remove("range");
        // If-Range is not evaluated on the fragments' own ETags.
        headers.remove("if-range");
        // After any the pipeline named (an SLO manifest's own ETag comes
        // first), as Swift's proxy appends it.
        crate::service::add_to_header_list(
            &mut headers,
            "x-backend-etag-is-at",
            "X-Object-Sysmeta-Ec-Etag",
        );
        let path = self.target.path();
        if req.method() == Method::HEAD {
            let resp = self
                .app
                .backend
                .read(&plan, Method::HEAD, &path, None, headers, false)
                .await;
            return Ok(fix_response(resp));
        }

        let client_range = header_str(req.headers(), "range").and_then(|r| Range::parse(r).ok());
        let segment_size = ec.segment_size;
        let fragment_size = scheme.fragment_size(segment_size);
        let mut first_headers = headers.clone();
        if let Some(spec) = client_range
            .as_ref()
            .and_then(|r| r.specs.first())
            .filter(|_| ranged)
        {
            let r = fragment_range(*spec, segment_size, fragment_size);
            if !r.is_empty() {
                set_header(&mut first_headers, "range", &r);
            }
        }

        // Gathering.
        let mut collection = Collection {
            k,
            m: scheme.m(),
            replicas: plan.replicas,
            buckets: BTreeMap::new(),
            bad: BTreeMap::new(),
            asked: 0,
        };
        let mut nodes = Nodes::new(&plan);
        let sender = self.app.backend.sender();
        let mut pending = FuturesUnordered::new();
        let ask = |dev: Device, role: Role, prefs: String| {
            let mut h = first_headers.clone();
            set_header(&mut h, pec::X_BACKEND_FRAGMENT_PREFERENCES, &prefs);
            let bpath = backend_path(&dev, plan.partition, &path, None);
            let sender = sender.clone();
            let task = tokio::spawn(async move {
                let resp = sender.send(&dev, Method::GET, &bpath, h).await;
                Answer { dev, role, resp }
            });
            async move { task.await.ok() }
        };
        let next_node = |collection: &mut Collection, nodes: &mut Nodes| {
            collection.asked += 1;
            match collection.take_alternate() {
                Some(dev) => Some((dev, Role::Handoff)),
                None => nodes.take(),
            }
        };
        for _ in 0..k {
            if let Some((dev, role)) = next_node(&mut collection, &mut nodes) {
                pending.push(ask(dev, role, collection.preferences()));
            }
        }
        let timing = self.app.backend.timing;
        let max_extra = (2 * plan.replicas).saturating_sub(k);
        let mut extra = 0usize;
        let hedge = tokio::time::sleep(timing.concurrency_timeout);
        tokio::pin!(hedge);
        while !pending.is_empty() {
            let feed = timing.concurrent_gets && nodes.primaries_left(&plan);
            tokio::select! {
                answer = pending.next() => {
                    let Some(answer) = answer.flatten() else { continue };
                    let good = collection.add(answer, width).await;
                    if collection.satisfied() {
                        break;
                    }
                    let available = extra < max_extra && (nodes.left() || collection.has_alternate());
                    if available && (collection.total_shortfall() > pending.len() || !good) {
                        extra += 1;
                        if let Some((dev, role)) = next_node(&mut collection, &mut nodes) {
                            pending.push(ask(dev, role, collection.preferences()));
                        }
                    }
                }
                _ = &mut hedge, if feed => {
                    collection.asked += 1;
                    if let Some((dev, role)) = nodes.take() {
                        pending.push(ask(dev, role, collection.preferences()));
                    }
                    hedge.as_mut().reset(tokio::time::Instant::now() + timing.concurrency_timeout);
                }
            }
        }
        drop(pending);

        let best = collection.best();
        let chosen = match best {
            Best::Good(ts) if collection.satisfied() => {
                collection.buckets.remove(&ts).map(|b| (ts, b))
            }
            _ => None,
        };
        let Some((timestamp, bucket)) = chosen else {
            if ranged && best == Best::Bad(416) {
                let length = collection
                    .bad
                    .get(&416)
                    .and_then(|b| b.answers.first())
                    .and_then(|a| header_str(&a.headers, pec::X_OBJECT_SYSMETA_EC_CONTENT_LENGTH))
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let satisfiable = length.is_some_and(|len| {
                    client_range
                        .as_ref()
                        .and_then(|r| r.ranges_for_length(len))
                        .is_none_or(|r| !r.is_empty())
                });
                if satisfiable {
                    return Err(Retry);
                }
            }
            return Ok(fix_response(error_answer(collection, best, plan.replicas)));
        };
        let Some(first) = bucket.headers.clone() else {
            return Ok(unavailable());
        };
        let Some(length) = header_str(&first, pec::X_OBJECT_SYSMETA_EC_CONTENT_LENGTH)
            .and_then(|v| v.trim().parse::<u64>().ok())
        else {
            tracing::error!("EC fragment without X-Object-Sysmeta-Ec-Content-Length");
            return Ok(unavailable());
        };
        let layout = Layout::new(&scheme, segment_size, length);
        let etag = ec_etag(&first);

        // The client's view.
        let mut out = first.clone();
        for name in ["content-length", "content-range"] {
            out.remove(name);
        }
        for name in HOP_HEADERS {
            out.remove(*name);
        }
        if let Some(e) = &etag {
            set_header(&mut out, "etag", e);
        }
        let content_type = out
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| clean_content_type(v.as_bytes()))
            .and_then(|v| HeaderValue::from_bytes(v).ok());
        if let Some(ct) = content_type {
            out.insert(http::header::CONTENT_TYPE, ct);
        }
        out.insert("accept-ranges", HeaderValue::from_static("bytes"));
        let ignore_range = header_str(req.headers(), "x-backend-ignore-range-if-metadata-present")
            .is_some_and(|names| {
                names
                    .split(',')
                    .map(str::trim)
                    .any(|n| !n.is_empty() && first.contains_key(n.to_ascii_lowercase().as_str()))
            });
        strip_ec_headers(&mut out);
        let ranges = if ignore_range {
            None
        } else {
            client_range
                .and_then(|r| r.ranges_for_length(length))
                // A zero-length object has no bytes to range over: the
                // object servers answer it whole.
                .filter(|r| length > 0 || r.is_empty())
        };
        let (status, ranges, multipart) = match ranges {
            Some(r) if r.is_empty() => {
                let mut resp = error_response(StatusCode::RANGE_NOT_SATISFIABLE, None);
                // The object's headers (ETag, Last-Modified, metadata), as
                // the replicated 416 carries them; the body is the error's.
                for (name, value) in &out {
                    if name != http::header::CONTENT_TYPE && name != http::header::CONTENT_LENGTH {
                        resp.headers_mut().insert(name.clone(), value.clone());
                    }
                }
                set_header(
                    resp.headers_mut(),
                    "content-range",
                    &format!("bytes */{length}"),
                );
                resp.headers_mut()
                    .insert("accept-ranges", HeaderValue::from_static("bytes"));
                return Ok(resp);
            }
            Some(r) if r.len() == 1 => {
                set_header(
                    &mut out,
                    "content-range",
                    &content_range_value(r[0].0, r[0].1, length),
                );
                (StatusCode::PARTIAL_CONTENT, r, None)
            }
            Some(r) => {
                let content_type = header_str(&out, "content-type")
                    .unwrap_or("application/octet-stream")
                    .to_string();
                let boundary = new_boundary(&path, &timestamp);
                set_header(
                    &mut out,
                    "content-type",
                    &format!("multipart/byteranges;boundary={boundary}"),
                );
                (
                    StatusCode::PARTIAL_CONTENT,
                    r,
                    Some((boundary, content_type)),
                )
            }
            None => (StatusCode::OK, vec![(0, length)], None),
        };
        let body_len = match &multipart {
            Some((boundary, ct)) => multipart_body_length(boundary, ct, &ranges, length),
            None => ranges.iter().map(|(s, e)| e - s).sum(),
        };
        out.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body_len));

        // k sources, data fragments first; the rest are spares.
        let mut getters: Vec<Getter> = Vec::new();
        let mut spares: Vec<Getter> = Vec::new();
        for (_, mut list) in bucket.gets {
            if !list.is_empty() {
                getters.push(list.remove(0));
            }
            spares.extend(list);
        }
        let rest = getters.split_off(k.min(getters.len()));
        spares.extend(rest);
        let mut fetch_headers = headers;
        fetch_headers.remove("if-match");
        fetch_headers.remove("if-none-match");
        fetch_headers.remove("if-modified-since");
        fetch_headers.remove("if-unmodified-since");
        let reader = Reader {
            scheme,
            layout,
            fetcher: Fetcher {
                sender: self.app.backend.sender(),
                partition: plan.partition,
                path,
                headers: fetch_headers,
                timestamp,
                etag,
                width,
            },
            active: getters.into_iter().map(Source::from_getter).collect(),
            spares,
            unused: nodes.rest(),
            failed: Vec::new(),
            want_end: 0,
            last: None,
        };
        let (tx, body) = apus_http::body::channel(2, Some(body_len));
        tokio::spawn(stream_ranges(reader, ranges, multipart, tx));
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = out;
        Ok(resp)
    }
}

/// A ranged first try must be repeated without its range.
struct Retry;

/// A multipart boundary that differs between objects and versions.
fn new_boundary(path: &str, ts: &Timestamp) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{:x}",
        Md5::digest(format!("{path}{}{now}", ts.internal()).as_bytes())
    )
}

/// Sends the client's ranges, decoding the segments each needs.
async fn stream_ranges(
    mut reader: Reader,
    ranges: Vec<(u64, u64)>,
    multipart: Option<(String, String)>,
    tx: apus_http::body::BodySender,
) {
    let length = reader.layout.length;
    let segment_size = reader.layout.segment_size;
    for (i, (start, end)) in ranges.into_iter().enumerate() {
        if let Some((boundary, ct)) = &multipart {
            let mut head = String::new();
            if i > 0 {
                head.push_str("\r\n");
            }
            head.push_str(&multipart_part_header(boundary, ct, start, end, length));
            if tx.send(Bytes::from(head)).await.is_err() {
                return;
            }
        }
        if end > start {
            let first = start / segment_size;
            let last = (end - 1) / segment_size;
            reader.want_end = reader.layout.fragment_end(last);
            for s in first..=last {
                let segment = match reader.segment(s).await {
                    Ok(seg) => seg,
                    Err(e) => {
                        tracing::error!(error = %e, "EC object GET: cut short");
                        tx.abort(e).await;
                        return;
                    }
                };
                let seg_start = s * segment_size;
                let from = start.saturating_sub(seg_start) as usize;
                let to = (end.min(seg_start + segment.len() as u64) - seg_start) as usize;
                if from >= to {
                    continue;
                }
                if tx.send(segment.slice(from..to)).await.is_err() {
                    return;
                }
            }
        }
    }
    if let Some((boundary, _)) = &multipart {
        let tail = format!("\r\n{}", multipart_terminator(boundary));
        let _ = tx.send(Bytes::from(tail)).await;
    }
}

/// Swift's answer when no timestamp has k durable fragments.
fn error_answer(collection: Collection, best: Best, replicas: usize) -> Resp {
    let best_bucket = match best {
        Best::Good(ts) => collection.buckets.get(&ts),
        _ => None,
    };
    let best_durable = best_bucket.is_some_and(|b| b.durable);
    let best_ts = match best {
        Best::Good(ts) => Some(ts),
        _ => None,
    };
    let mut suppress = REBALANCE_MISSING_SUPPRESSION.min(replicas.saturating_sub(1));
    let mut answers: Vec<NodeResponse> = Vec::new();
    for bad in collection.bad.into_values() {
        for node in bad.answers {
            if best_durable {
                let bad_ts = data_timestamp(&node.headers).unwrap_or(Timestamp::ZERO);
                if best_ts.is_some_and(|t| bad_ts <= t) {
                    // Good data exists; it is only out of reach now.
                    continue;
                }
            }
            let ts = header_timestamp(&node.headers, "x-backend-timestamp")
                .or_else(|| header_timestamp(&node.headers, "x-timestamp"))
                .unwrap_or(Timestamp::ZERO);
            if suppress > 0 && node.status == 404 && ts == Timestamp::ZERO {
                suppress -= 1;
                continue;
            }
            answers.push(node);
        }
    }
    if answers.is_empty() && best_bucket.is_some_and(|b| !b.durable && b.headers.is_some()) {
        // Fragments that were never made durable are no object.
        return error_response(StatusCode::NOT_FOUND, None);
    }
    let quorum = quorum_size(answers.len());
    best_response(&answers, quorum, "Object GET")
}

/// The EC sysmeta as the client sees it: the object's ETag and length,
/// never the fragments' own.
fn fix_response(mut resp: Resp) -> Resp {
    let status = resp.status().as_u16();
    let h = resp.headers_mut();
    if let Some(etag) = ec_etag(h) {
        set_header(h, "etag", &etag);
    } else if h.contains_key(pec::X_OBJECT_SYSMETA_EC_FRAG_INDEX) {
        h.remove("etag");
    }
    if (200..400).contains(&status) || status == 416 {
        h.insert("accept-ranges", HeaderValue::from_static("bytes"));
    }
    let length = header_str(h, pec::X_OBJECT_SYSMETA_EC_CONTENT_LENGTH).map(str::to_string);
    if let Some(len) = &length {
        if (200..300).contains(&status) {
            if let Ok(v) = HeaderValue::from_str(len.trim()) {
                h.insert(http::header::CONTENT_LENGTH, v);
            }
        }
        if status == 416 {
            set_header(h, "content-range", &format!("bytes */{}", len.trim()));
        }
    }
    let content_type = h
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| clean_content_type(v.as_bytes()))
        .and_then(|v| HeaderValue::from_bytes(v).ok());
    if let Some(ct) = content_type {
        h.insert(http::header::CONTENT_TYPE, ct);
    }
    strip_ec_headers(h);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_ranges_follow_swift() {
        let spec = |start, end| ByteRangeSpec { start, end };
        // 100-byte segments, 30-byte fragments.
        assert_eq!(
            fragment_range(spec(Some(150), Some(250)), 100, 30),
            "bytes=30-89"
        );
        assert_eq!(
            fragment_range(spec(Some(0), Some(0)), 100, 30),
            "bytes=0-29"
        );
        assert_eq!(fragment_range(spec(Some(300), None), 100, 30), "bytes=90-");
        assert_eq!(fragment_range(spec(None, Some(50)), 100, 30), "bytes=-60");
        assert_eq!(fragment_range(spec(None, Some(100)), 100, 30), "bytes=-60");
        assert_eq!(fragment_range(spec(None, Some(101)), 100, 30), "bytes=-90");
    }

    #[test]
    fn content_ranges() {
        let mut h = HeaderMap::new();
        set_header(&mut h, "content-range", "bytes 10-19/100");
        assert_eq!(parse_content_range(&h), Some((10, 20)));
        set_header(&mut h, "content-range", "bytes 19-10/100");
        assert_eq!(parse_content_range(&h), None);
        set_header(&mut h, "content-range", "bytes */100");
        assert_eq!(parse_content_range(&h), None);
    }
}
