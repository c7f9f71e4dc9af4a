//! The proxy's one hash of a large replicated PUT's body.
//!
//! Swift has every object server hash what it stores with MD5, so three
//! replicas hash the body three times: most of a large upload's CPU. For
//! bodies over [`PROXY_HASHED_MIN`] the proxy hashes once instead, MD5
//! and CRC-32 together, and ends each upload with both as trailers
//! (`Etag`, `X-Backend-Body-Crc32`, announced by `X-Backend-Etag-Trailer:
//! crc32`). Each object server computes the CRC-32 of what it stored (it
//! keeps it as the data file's checksum anyway) and takes the proxy's
//! ETag only when the two CRCs agree: the bytes on its disk are the bytes
//! the proxy hashed. A client `Etag` that differs from the proxy's MD5
//! ends the uploads unfinished.
//!
//! The hashing runs on a blocking thread beside the transfer, a batch of
//! the chunks already in memory at a time, so it adds no time to the
//! relay. It holds that thread only while it hashes: a task that waited
//! there for the next chunk would keep a thread of the shared blocking
//! pool (which the object servers' writers need) waiting on the relay.

use bytes::Bytes;
use md5::{Digest, Md5};
use tokio::task::JoinHandle;

/// Bodies at most this long (by Content-Length) are hashed by each object
/// server as in Swift: hashing a small body costs less than the trailers.
pub(super) const PROXY_HASHED_MIN: u64 = 64 * 1024;

/// Bytes gathered before a batch goes to the hashing thread: one wake-up
/// per MiB rather than one per network read.
const BATCH_BYTES: usize = 1 << 20;

/// The finished digests of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BodyDigest {
    /// MD5, lower-case hex: the object's ETag.
    pub etag: String,
    pub crc32: u32,
}

impl BodyDigest {
    /// The CRC-32 as the `X-Backend-Body-Crc32` trailer spells it.
    pub fn crc32_hex(&self) -> String {
        format!("{:08x}", self.crc32)
    }
}

/// The running digests.
struct Digests {
    md5: Md5,
    crc: crc32fast::Hasher,
}

/// MD5 and CRC-32 of a body fed chunk by chunk, computed off the runtime:
/// one batch hashed while the next is gathered, so at most two
/// [`BATCH_BYTES`] of the body are held for hashing.
pub(super) struct BodyHasher {
    /// The digests, when no batch is being hashed.
    idle: Option<Digests>,
    /// The batch being hashed, which hands the digests back.
    hashing: Option<JoinHandle<Digests>>,
    batch: Vec<Bytes>,
    batched: usize,
}

impl BodyHasher {
    pub fn start() -> Self {
        BodyHasher {
            idle: Some(Digests {
                md5: Md5::new(),
                crc: crc32fast::Hasher::new(),
            }),
            hashing: None,
            batch: Vec::new(),
            batched: 0,
        }
    }

    /// Adds the next chunk (a cheap clone of the caller's). Waits only
    /// when the previous batch is still being hashed as this one fills.
    pub async fn feed(&mut self, chunk: &Bytes) -> Result<(), HasherGone> {
        self.batched += chunk.len();
        self.batch.push(chunk.clone());
        if self.batched >= BATCH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// The digests once the batch being hashed is done.
    async fn digests(&mut self) -> Result<Digests, HasherGone> {
        match (self.hashing.take(), self.idle.take()) {
            (Some(running), _) => running.await.map_err(|_| HasherGone),
            (None, Some(idle)) => Ok(idle),
            (None, None) => Err(HasherGone),
        }
    }

    async fn flush(&mut self) -> Result<(), HasherGone> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut digests = self.digests().await?;
        self.batched = 0;
        let batch = std::mem::take(&mut self.batch);
        self.hashing = Some(tokio::task::spawn_blocking(move || {
            for chunk in &batch {
                digests.md5.update(chunk);
                digests.crc.update(chunk);
            }
            digests
        }));
        Ok(())
    }

    /// The digests of everything fed.
    pub async fn finish(mut self) -> Result<BodyDigest, HasherGone> {
        self.flush().await?;
        let digests = self.digests().await?;
        Ok(BodyDigest {
            etag: apus_core::hash::to_hex(&digests.md5.finalize()),
            crc32: digests.crc.finalize(),
        })
    }
}

/// The hashing thread ended early (it panicked or the runtime is shutting
/// down): the upload cannot be vouched for.
#[derive(Debug)]
pub(super) struct HasherGone;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn digests_match_a_one_shot_hash_across_batches() {
        // Three batches and a partial one, in uneven chunks.
        let body: Vec<u8> = (0..(3 * BATCH_BYTES + 12_345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut hasher = BodyHasher::start();
        for chunk in body.chunks(65_521) {
            hasher.feed(&Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        let digest = hasher.finish().await.unwrap();
        assert_eq!(
            digest.etag,
            apus_core::hash::to_hex(&Md5::digest(&body)),
            "MD5"
        );
        assert_eq!(digest.crc32, crc32fast::hash(&body));
        assert_eq!(digest.crc32_hex().len(), 8);
    }

    #[tokio::test]
    async fn an_empty_body_has_the_empty_digests() {
        let digest = BodyHasher::start().finish().await.unwrap();
        assert_eq!(digest.etag, "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(digest.crc32, 0);
        assert_eq!(digest.crc32_hex(), "00000000");
    }
}
