//! The object auditor: reads every object of this node's devices and
//! quarantines the ones whose bytes or metadata went bad, so replication
//! (or, for erasure-coded policies, reconstruction) restores a good copy.
//!
//! For each local device and storage policy it walks
//! `objects[-N]/<partition>/<suffix>/<hash>` and opens the object through
//! `apus-diskfile`, which quarantines unreadable metadata, a name that does
//! not hash to its directory and a file whose size differs from its
//! `Content-Length`; it then reads the data through the disk file reader,
//! which quarantines an object whose MD5 differs from its ETag. A
//! quarantined object moves to `<device>/quarantined/objects[-N]/<hash>`
//! and its suffix is invalidated, so the next replication pass sees the
//! copy as missing. As in Swift, a tombstone older than `reclaim_age`
//! gets its suffix invalidated so the replicator's rehash reclaims it.
//!
//! In an erasure-coded policy (`DaemonContext::ec_policies`) a hash
//! directory holds fragment archives `<ts>#<frag_index>[#d].data`, and the
//! auditor checks each one the EC rules keep: every index at every
//! timestamp down to the durable one, durable or not (a handoff may hold
//! several indexes of one object). Swift's auditor opens only the durable
//! fragment its disk file picks; auditing them all is stricter, with the
//! same checks. Each archive is opened on its own (the disk-file checks
//! above, MD5 included), and quarantined when:
//! - its metadata lacks a non-empty `Content-Length`,
//!   `X-Object-Sysmeta-Ec-Frag-Index` or `X-Object-Sysmeta-Ec-Etag` (what
//!   Swift's `ECDiskFile.validate_metadata` requires), or its
//!   `X-Object-Sysmeta-Ec-Frag-Index` differs from the file name's index;
//! - walked fragment by fragment as it streams, a header does not parse
//!   (magic, library version, metadata checksum: what liberasurecode
//!   rejects when Swift's `ECDiskFileReader` checks each fragment), names
//!   another index than the file's, or declares more bytes than the
//!   archive has left, or bytes remain after the last fragment. Swift cuts
//!   the archive at the policy's fragment size instead; following the
//!   headers needs no policy shape and holds only one header in memory.
//!
//! A bad archive takes its whole hash directory to quarantine, as in
//! Swift, unless another archive of the same timestamp stays and none
//! older does: then only the bad file moves, into
//! `quarantined/objects[-N]/<hash>/`, and the suffix is invalidated. As
//! in Swift, the auditor neither removes nor flags non-durable fragments
//! older than `reclaim_age`: it audits them like any other, and the
//! cleanup of the next rehash reclaims them.
//!
//! Reading is paced by `files_per_second` (per hash directory, and per
//! further archive in it) and `bytes_per_second` (Swift's defaults: 20
//! files and 10 MB per second; 0 means unlimited). Besides
//! `objects_audited`, `bytes_read`, `quarantined` and `errors`, a pass
//! counts `ec_fragments_audited` and `ec_quarantined` (archives, included
//! in `quarantined`).

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use apus_diskfile::{
    layout, DiskFileConfig, DiskFileError, DiskFileManager, EcPolicy, FragSelect, OpenOptions,
    EC_FRAG_INDEX_KEY,
};
use apus_ec::{FragmentHeader, HEADER_SIZE};

use crate::context::{DaemonContext, ServerKind};
use crate::rate::RateLimiter;
use crate::stats::Stats;
use crate::worker::Worker;

/// Object auditor settings (Swift's `[object-auditor]` names).
#[derive(Clone, Debug)]
pub struct ObjectAuditorSettings {
    /// Objects audited per second; 0 = unlimited.
    pub files_per_second: f64,
    /// Bytes read per second; 0 = unlimited.
    pub bytes_per_second: f64,
    /// Seconds after which a tombstone is due for reclaiming.
    pub reclaim_age: f64,
    /// Bytes per read.
    pub disk_chunk_size: usize,
}

impl Default for ObjectAuditorSettings {
    fn default() -> Self {
        ObjectAuditorSettings {
            files_per_second: 20.0,
            bytes_per_second: 10_000_000.0,
            reclaim_age: apus_diskfile::DEFAULT_RECLAIM_AGE,
            disk_chunk_size: 65536,
        }
    }
}

/// The `object-auditor` worker.
#[derive(Debug, Default)]
pub struct ObjectAuditor {
    settings: ObjectAuditorSettings,
}

impl ObjectAuditor {
    pub fn new(settings: ObjectAuditorSettings) -> Self {
        ObjectAuditor { settings }
    }
}

/// The two limiters, moved into the blocking thread that audits a
/// partition and handed back after it.
struct Limiters {
    files: RateLimiter,
    bytes: RateLimiter,
}

/// Sets the flag when dropped: a pass cut short stops its blocking
/// partition walk at the next object.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

enum Outcome {
    Passed(u64),
    Quarantined(String),
    Error(String),
}

impl Worker for ObjectAuditor {
    fn name(&self) -> &'static str {
        "object-auditor"
    }

    async fn run_pass(&self, ctx: &DaemonContext, stats: &Stats) -> Result<(), String> {
        let rings = ctx.load_rings()?;
        let mut conf = DiskFileConfig::new(ctx.devices.clone(), ctx.hash.clone());
        conf.mount_check = ctx.mount_check;
        conf.reclaim_age = self.settings.reclaim_age;
        let mgr = DiskFileManager::new(conf);
        // Every local device of any object ring, once.
        let mut devices: Vec<String> = Vec::new();
        for ring in rings.objects.values() {
            for dev in ctx.local_devices(ring, ServerKind::Object) {
                if !devices.contains(&dev.device) {
                    devices.push(dev.device.clone());
                }
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let _guard = StopOnDrop(stop.clone());
        let mut limiters = Some(Limiters {
            files: RateLimiter::new(self.settings.files_per_second),
            bytes: RateLimiter::new(self.settings.bytes_per_second),
        });
        for device in devices {
            let Some(dev_path) = ctx.device_path(&device) else {
                tracing::warn!(%device, "skipping missing or unmounted device");
                stats.incr("errors");
                continue;
            };
            for &policy in &ctx.policies {
                // The auditor needs no code shape, only which policies
                // are erasure-coded: fragment indexes are checked against
                // each other (name, metadata, headers), not against a
                // width, so any index a name can carry is accepted here.
                let ec = ctx
                    .ec_policies
                    .contains(&policy)
                    .then(|| EcPolicy::new(policy, apus_ec::MAX_FRAGMENTS as u32, 0));
                let data_dir = dev_path.join(layout::data_dir(policy));
                let dir = data_dir.clone();
                let parts = match tokio::task::spawn_blocking(move || list_partitions(&dir)).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => {
                        tracing::error!(dir = %data_dir.display(), error = %e, "cannot list partitions");
                        stats.incr("errors");
                        continue;
                    }
                    Err(_) => continue,
                };
                for partition in parts {
                    let lim = limiters.take().unwrap_or_else(|| Limiters {
                        files: RateLimiter::new(self.settings.files_per_second),
                        bytes: RateLimiter::new(self.settings.bytes_per_second),
                    });
                    let job = PartitionAudit {
                        mgr: mgr.clone(),
                        device: device.clone(),
                        policy,
                        ec,
                        partition,
                        settings: self.settings.clone(),
                        stats: stats.clone(),
                        stop: stop.clone(),
                    };
                    // A panic loses the limiters' state only; new ones follow.
                    limiters = tokio::task::spawn_blocking(move || job.run(lim)).await.ok();
                }
            }
        }
        Ok(())
    }
}

/// Partition numbers under `objects[-N]`.
fn list_partitions(dir: &Path) -> std::io::Result<Vec<u32>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut parts = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(p) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            parts.push(p);
        }
    }
    parts.sort_unstable();
    Ok(parts)
}

/// Sorted names in a directory; none when it is gone.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// One partition's audit, run on a blocking thread.
struct PartitionAudit {
    mgr: DiskFileManager,
    device: String,
    policy: u32,
    /// Set for an erasure-coded policy: its hash directories hold
    /// fragment archives.
    ec: Option<EcPolicy>,
    partition: u32,
    settings: ObjectAuditorSettings,
    stats: Stats,
    stop: Arc<AtomicBool>,
}

impl PartitionAudit {
    fn run(self, mut lim: Limiters) -> Limiters {
        let Ok(part_dir) = self
            .mgr
            .partition_path(&self.device, self.partition, self.policy)
        else {
            return lim;
        };
        for suffix in names(&part_dir) {
            if !layout::valid_suffix(&suffix) {
                continue;
            }
            for hash in names(&part_dir.join(&suffix)) {
                if self.stop.load(Ordering::Relaxed) {
                    return lim;
                }
                lim.files.acquire_blocking(1.0);
                match self.ec {
                    None => {
                        let outcome = self.audit(&part_dir, &hash, &mut lim.bytes);
                        self.record(&hash, None, outcome);
                    }
                    Some(ec) => self.audit_ec(&part_dir, &hash, &ec, &mut lim),
                }
                self.stats.incr("objects_audited");
            }
        }
        lim
    }

    /// Counts and logs one object's (or, with `archive`, one fragment
    /// archive's) outcome.
    fn record(&self, hash: &str, archive: Option<&str>, outcome: Outcome) {
        let archive = archive.unwrap_or_default();
        match outcome {
            Outcome::Passed(bytes) => {
                self.stats.add("bytes_read", bytes);
            }
            Outcome::Quarantined(reason) => {
                tracing::error!(
                    device = %self.device, partition = self.partition, hash = %hash,
                    %archive, %reason, "object failed audit and was quarantined"
                );
                self.stats.incr("quarantined");
                if self.ec.is_some() {
                    self.stats.incr("ec_quarantined");
                }
            }
            Outcome::Error(e) => {
                tracing::error!(
                    device = %self.device, partition = self.partition, hash = %hash,
                    %archive, error = %e, "error auditing object"
                );
                self.stats.incr("errors");
            }
        }
    }

    /// What an object that did not open means: quarantined on opening,
    /// deleted (an old tombstone gets its suffix invalidated, so the next
    /// rehash reclaims it), expired or gone (nothing to audit).
    fn not_opened(&self, part_dir: &Path, hash: &str, err: DiskFileError) -> Outcome {
        match err {
            DiskFileError::Quarantined { reason, .. } => Outcome::Quarantined(reason),
            DiskFileError::Deleted { timestamp, .. } => {
                let age = apus_core::Timestamp::now().as_secs_f64() - timestamp.as_secs_f64();
                if age > self.settings.reclaim_age {
                    if let Err(e) =
                        apus_diskfile::invalidate_hash(part_dir, layout::suffix_of(hash))
                    {
                        return Outcome::Error(e.to_string());
                    }
                }
                Outcome::Passed(0)
            }
            DiskFileError::Expired { .. } | DiskFileError::NotFound => Outcome::Passed(0),
            e => Outcome::Error(e.to_string()),
        }
    }

    fn audit(&self, part_dir: &Path, hash: &str, bytes: &mut RateLimiter) -> Outcome {
        let df = match self
            .mgr
            .diskfile_from_hash(&self.device, self.partition, hash, self.policy)
        {
            Ok(df) => df,
            Err(e) => return Outcome::Error(e.to_string()),
        };
        let open = match df.open(OpenOptions::default()) {
            Ok(open) => open,
            Err(e) => return self.not_opened(part_dir, hash, e),
        };
        let mut reader = open.auditing_reader();
        let mut buf = vec![0u8; self.settings.disk_chunk_size.max(1)];
        let mut read = 0u64;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Outcome::Passed(read),
                Ok(n) => {
                    read += n as u64;
                    bytes.acquire_blocking(n as f64);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.stats.add("bytes_read", read);
                    return if reader.quarantined().is_some() {
                        Outcome::Quarantined(e.to_string())
                    } else {
                        Outcome::Error(e.to_string())
                    };
                }
            }
        }
    }

    /// Audits every fragment archive of an erasure-coded hash directory:
    /// those the EC rules keep (each timestamp's fragments down to the
    /// durable one, durable or not, every index present). A directory
    /// without any is opened as a whole, for its tombstone.
    fn audit_ec(&self, part_dir: &Path, hash: &str, ec: &EcPolicy, lim: &mut Limiters) {
        let df = match self.mgr.ec_diskfile_from_hash(
            &self.device,
            self.partition,
            hash,
            ec,
            FragSelect::any(),
        ) {
            Ok(df) => df,
            Err(e) => return self.record(hash, None, Outcome::Error(e.to_string())),
        };
        let files = match df.ondisk_files() {
            Ok(files) => files,
            Err(e) => return self.record(hash, None, self.not_opened(part_dir, hash, e)),
        };
        let archives: Vec<String> = files
            .frag_sets
            .iter()
            .flat_map(|(_, set)| set.iter().map(|f| f.filename.clone()))
            .collect();
        if archives.is_empty() {
            let outcome = match df.open(OpenOptions::default()) {
                Ok(_) => Outcome::Passed(0),
                Err(e) => self.not_opened(part_dir, hash, e),
            };
            return self.record(hash, None, outcome);
        }
        for (i, archive) in archives.iter().enumerate() {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            if i > 0 {
                // Each further archive is one more file read.
                lim.files.acquire_blocking(1.0);
            }
            let outcome = self.audit_archive(hash, ec, archive, &mut lim.bytes);
            self.stats.incr("ec_fragments_audited");
            self.record(hash, Some(archive), outcome);
        }
    }

    /// Audits one fragment archive: its metadata must carry what Swift's
    /// `ECDiskFile.validate_metadata` requires and name the file's index;
    /// its bytes must match the ETag and `Content-Length` (the disk-file
    /// reader's checks) and walk as a sequence of valid fragments of that
    /// index that ends exactly at the end of the archive.
    fn audit_archive(
        &self,
        hash: &str,
        ec: &EcPolicy,
        archive: &str,
        bytes: &mut RateLimiter,
    ) -> Outcome {
        let df =
            match self
                .mgr
                .ec_archive_from_hash(&self.device, self.partition, hash, ec, archive)
            {
                Ok(df) => df,
                Err(e) => return Outcome::Error(e.to_string()),
            };
        let quarantine = |reason: String| match df.quarantine(reason) {
            DiskFileError::Quarantined { reason, .. } => Outcome::Quarantined(reason),
            e => Outcome::Error(e.to_string()),
        };
        let open = match df.open(OpenOptions::default()) {
            Ok(open) => open,
            Err(DiskFileError::Quarantined { reason, .. }) => return Outcome::Quarantined(reason),
            // Removed, made obsolete or expired since the listing.
            Err(
                DiskFileError::NotFound
                | DiskFileError::Deleted { .. }
                | DiskFileError::Expired { .. }
                | DiskFileError::StateChanged,
            ) => return Outcome::Passed(0),
            Err(e) => return Outcome::Error(e.to_string()),
        };
        if !open.validate_metadata() {
            return quarantine(format!(
                "metadata lacks Content-Length, {EC_FRAG_INDEX_KEY} or X-Object-Sysmeta-Ec-Etag"
            ));
        }
        let index = open.frag_index();
        let stored = open
            .inner()
            .datafile_metadata()
            .get(EC_FRAG_INDEX_KEY)
            .unwrap_or_default()
            .to_string();
        if layout::validate_fragment_index(&stored, Some(ec)) != Some(index) {
            return quarantine(format!(
                "{EC_FRAG_INDEX_KEY} {stored:?} does not match the archive's index {index}"
            ));
        }
        let inner = open.into_inner();
        let mut walker = FragmentWalker::new(index, inner.content_length());
        let mut reader = inner.auditing_reader();
        let mut buf = vec![0u8; self.settings.disk_chunk_size.max(1)];
        let mut read = 0u64;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    read += n as u64;
                    bytes.acquire_blocking(n as f64);
                    if let Err(reason) = walker.feed(&buf[..n]) {
                        self.stats.add("bytes_read", read);
                        return quarantine(reason);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.stats.add("bytes_read", read);
                    return if reader.quarantined().is_some() {
                        Outcome::Quarantined(e.to_string())
                    } else {
                        Outcome::Error(e.to_string())
                    };
                }
            }
        }
        match walker.finish() {
            Ok(()) => Outcome::Passed(read),
            Err(reason) => {
                self.stats.add("bytes_read", read);
                quarantine(reason)
            }
        }
    }
}

/// Checks a fragment archive as it streams by: each fragment is an
/// 80-byte header, which must parse (magic, library version, metadata
/// checksum) and name the archive's index, followed by the payload and
/// backend metadata sizes it declares, which must fit in the archive;
/// after the last fragment nothing may remain. Only a header is ever
/// held, so memory stays bounded whatever the archive or its headers say.
struct FragmentWalker {
    index: u32,
    archive_len: u64,
    /// Archive offset of the next byte fed.
    offset: u64,
    /// Where the fragment being read starts.
    start: u64,
    header: [u8; HEADER_SIZE],
    /// Header bytes gathered so far (0 between fragments).
    have: usize,
    /// Bytes of the current fragment's body not yet fed.
    body_left: u64,
    fragments: usize,
}

impl FragmentWalker {
    fn new(index: u32, archive_len: u64) -> Self {
        FragmentWalker {
            index,
            archive_len,
            offset: 0,
            start: 0,
            header: [0; HEADER_SIZE],
            have: 0,
            body_left: 0,
            fragments: 0,
        }
    }

    fn feed(&mut self, mut chunk: &[u8]) -> Result<(), String> {
        while !chunk.is_empty() {
            if self.body_left > 0 {
                let n = chunk
                    .len()
                    .min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
                chunk = &chunk[n..];
                self.body_left -= n as u64;
                self.offset += n as u64;
                continue;
            }
            if self.have == 0 {
                self.start = self.offset;
            }
            let n = chunk.len().min(HEADER_SIZE - self.have);
            self.header[self.have..self.have + n].copy_from_slice(&chunk[..n]);
            self.have += n;
            self.offset += n as u64;
            chunk = &chunk[n..];
            if self.have == HEADER_SIZE {
                self.have = 0;
                self.check_header()?;
            }
        }
        Ok(())
    }

    fn check_header(&mut self) -> Result<(), String> {
        let at = self.start;
        let h = FragmentHeader::parse(&self.header, self.fragments)
            .map_err(|e| format!("invalid fragment header at offset {at:#x}: {e}"))?;
        if h.index != self.index {
            return Err(format!(
                "fragment header at offset {at:#x} has index {}, the archive is index {}",
                h.index, self.index
            ));
        }
        let body = u64::from(h.payload_size) + u64::from(h.backend_metadata_size);
        let end = self.offset + body;
        if end > self.archive_len {
            return Err(format!(
                "fragment at offset {at:#x} declares {body} bytes after its header, \
                 running {} bytes past the end of the archive",
                end - self.archive_len
            ));
        }
        self.body_left = body;
        self.fragments += 1;
        Ok(())
    }

    /// Called once the archive was read through.
    fn finish(&self) -> Result<(), String> {
        if self.have > 0 {
            return Err(format!(
                "{} trailing bytes at offset {:#x}, too few for a fragment header",
                self.have, self.start
            ));
        }
        if self.body_left > 0 {
            return Err(format!(
                "archive ends {} bytes short inside the fragment at offset {:#x}",
                self.body_left, self.start
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use apus_ec::{EcScheme, EcType};

    fn archive(index: usize) -> Vec<u8> {
        let body: Vec<u8> = (0..10_000u32).map(|i| (i * 13) as u8).collect();
        let scheme = EcScheme::new(EcType::LiberasurecodeRsVand, 4, 2).unwrap();
        scheme
            .encode_archives(&body, 4096)
            .unwrap()
            .swap_remove(index)
    }

    /// Walks `bytes` fed `chunk` bytes at a time.
    fn walk(index: u32, bytes: &[u8], chunk: usize) -> Result<usize, String> {
        let mut w = FragmentWalker::new(index, bytes.len() as u64);
        for c in bytes.chunks(chunk) {
            w.feed(c)?;
        }
        w.finish()?;
        Ok(w.fragments)
    }

    fn walk_all_ways(index: u32, bytes: &[u8]) -> Result<usize, String> {
        let first = walk(index, bytes, 1);
        for chunk in [7, 80, 81, 1000, 1 << 20] {
            assert_eq!(walk(index, bytes, chunk), first, "chunk {chunk}");
        }
        first
    }

    #[test]
    fn a_good_archive_walks_whatever_the_chunking() {
        let a = archive(2);
        assert_eq!(walk_all_ways(2, &a), Ok(3));
        assert_eq!(walk_all_ways(2, &[]), Ok(0));
    }

    #[test]
    fn bad_archives_fail_with_their_reason() {
        let a = archive(2);
        // Where the second fragment starts.
        let frag = {
            let h = FragmentHeader::parse(&a, 0).unwrap();
            HEADER_SIZE + h.payload_size as usize
        };
        let fails = |bytes: &[u8], index: u32, want: &str| {
            let err = walk_all_ways(index, bytes).unwrap_err();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        };
        // A payload byte: not the walker's business (the MD5 is).
        let mut v = a.clone();
        v[frag - 100] ^= 1;
        assert_eq!(walk_all_ways(2, &v), Ok(3));
        fails(&a, 3, "has index 2, the archive is index 3");
        let mut v = a.clone();
        v[frag + 60] ^= 1;
        fails(
            &v,
            2,
            &format!("invalid fragment header at offset {frag:#x}"),
        );
        fails(&v, 2, "bad magic");
        let mut v = a.clone();
        v[frag + 5] ^= 1;
        fails(&v, 2, "checksum mismatch");
        fails(&a[..a.len() - 1], 2, "1 bytes past the end of the archive");
        let mut v = a.clone();
        v.extend_from_slice(&[0; 79]);
        fails(&v, 2, "79 trailing bytes");
        let mut v = a.clone();
        v.extend_from_slice(&[0; 80]);
        fails(
            &v,
            2,
            &format!("invalid fragment header at offset {:#x}", a.len()),
        );
    }

    #[test]
    fn a_header_promising_gigabytes_is_refused_at_once() {
        let a = archive(0);
        let mut h = FragmentHeader::parse(&a, 0).unwrap();
        h.payload_size = u32::MAX;
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(&a[HEADER_SIZE..]);
        let mut w = FragmentWalker::new(0, v.len() as u64);
        let err = w.feed(&v[..HEADER_SIZE]).unwrap_err();
        assert!(err.contains("past the end of the archive"), "{err}");
    }
}
