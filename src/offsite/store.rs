//! The object store: a blocking face over Apache OpenDAL's S3 service.
//!
//! OpenDAL signs the requests (AWS Signature V4, credentials from the
//! environment, the shared credentials file and `AWS_PROFILE`, or the ones
//! given), retries what S3 calls temporary, and turns a writer fed in chunks
//! into a multipart upload. Every upload carries an
//! `x-amz-checksum-crc32c` of each request body, which the store checks
//! before it answers, and our own md5 of the whole object as the user
//! metadata `crb-md5`, which `verify` compares without downloading.
//!
//! Everything here runs on one tokio runtime owned by [`Store`]; callers are
//! synchronous. Every error becomes one [`Error::Offsite`] line naming the
//! store and the object.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::future::Future;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};

use crate::progress::NoProgress;
use crate::repozo::stream::{fill, hex, md5_of};
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::services::S3;
use opendal::{ErrorKind, Operator};

use super::OffsiteConfig;
use crate::error::{Error, IoContext, Result};

/// Objects up to this size go up in one request; larger ones as multipart
/// uploads of parts this size, so memory stays at a few parts per job.
pub const PART_SIZE: usize = 16 << 20;

/// The user metadata key holding an object's md5 (hex).
pub const MD5_KEY: &str = "crb-md5";

/// What the store says of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its size in bytes.
    pub size: u64,
    /// The md5 (hex) push sent with it as `crb-md5`; `None` for an object
    /// some other client wrote.
    pub md5_sent: Option<String>,
    /// The store's ETag without quotes, when it gave one.
    pub etag: Option<String>,
}

/// An uploaded object as confirmed by the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    /// Bytes sent (equal to the file's size at the time).
    pub size: u64,
    /// md5 (hex) of the bytes sent.
    pub md5: String,
}

/// One object to download: where to, the md5 it must have, the
/// permission bits to give it.
#[derive(Clone, Debug)]
pub struct Download {
    /// The object's key.
    pub key: String,
    /// The local file.
    pub dest: std::path::PathBuf,
    /// Its md5 (hex), checked before the file gets its name.
    pub md5: Option<String>,
    /// Permission bits; `None` keeps the temporary file's (0600).
    pub mode: Option<u32>,
}

/// A connection to one `s3://bucket/prefix`.
pub struct Store {
    op: Operator,
    rt: tokio::runtime::Runtime,
    /// `s3://bucket/prefix`, for messages.
    url: String,
    /// The endpoint, for messages.
    endpoint: String,
    /// Parallel transfers.
    jobs: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

/// `offsite_region`, else the AWS tools' variables, else `us-east-1`.
fn region(cfg: &OffsiteConfig) -> String {
    cfg.region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".to_owned())
}

/// The process's TLS provider (rustls with ring) and HTTP transport.
fn install_tls_provider() {
    // A second install (another Store in the same process) fails harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // reqwest as OpenDAL's HTTP transport (the first install wins).
    static TRANSPORT: std::sync::Once = std::sync::Once::new();
    TRANSPORT.call_once(|| {
        if let Ok(client) = reqwest::Client::builder().build() {
            opendal::HttpTransporter::install_default(
                opendal_http_transport_reqwest::ReqwestTransport::new(client),
            );
        }
    });
}

impl Store {
    /// Connect (lazily: nothing is sent until the first request).
    ///
    /// # Errors
    /// [`Error::Offsite`] for a configuration OpenDAL refuses or a
    /// credentials file that cannot be read.
    pub fn open(cfg: &OffsiteConfig) -> Result<Store> {
        install_tls_provider();
        let mut b = S3::default()
            .bucket(&cfg.bucket)
            .root(&format!("/{}", cfg.prefix))
            .region(&region(cfg))
            .checksum_algorithm("crc32c");
        if let Some(endpoint) = &cfg.endpoint {
            b = b.endpoint(endpoint);
        }
        if let Some(path) = &cfg.credentials {
            let (key_id, secret, token) = super::credentials::read(path)?;
            b = b.access_key_id(&key_id).secret_access_key(&secret);
            if let Some(token) = token {
                b = b.session_token(&token);
            }
        }
        let url = cfg.url();
        let endpoint = cfg
            .endpoint
            .clone()
            .unwrap_or_else(|| "the AWS S3 endpoint".to_owned());
        let op = Operator::new(b)
            .map_err(|e| Error::Offsite(format!("{url}: {}", describe(&e, &endpoint))))?
            .layer(
                // Per request: a 16 MiB part on a slow uplink takes minutes.
                TimeoutLayer::new()
                    .with_timeout(Duration::from_secs(600))
                    .with_io_timeout(Duration::from_secs(600)),
            )
            .layer(
                RetryLayer::new()
                    .with_max_times(3)
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(2))
                    .with_notify(log_retry),
            );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| {
                Error::Offsite(format!("{url}: cannot start the transfer threads: {e}"))
            })?;
        Ok(Store {
            op,
            rt,
            url,
            endpoint,
            jobs: cfg.jobs.max(1),
        })
    }

    /// `s3://bucket/prefix`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Parallel transfers.
    #[must_use]
    pub fn jobs(&self) -> usize {
        self.jobs
    }

    fn fail(&self, what: &str, key: &str, e: &opendal::Error) -> Error {
        Error::Offsite(format!(
            "{}: {what} {key}: {}",
            self.url,
            describe(e, &self.endpoint)
        ))
    }

    /// Run `f` on the runtime.
    pub fn block_on<T>(&self, f: impl Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    /// Every object under `dir/` (recursively): key relative to the
    /// prefix → size. A missing directory lists nothing.
    ///
    /// # Errors
    /// [`Error::Offsite`].
    pub fn list(&self, dir: &str) -> Result<BTreeMap<String, u64>> {
        let dir = format!("{}/", dir.trim_end_matches('/'));
        self.block_on(async {
            let mut out = BTreeMap::new();
            let mut lister = self
                .op
                .lister_with(&dir)
                .recursive(true)
                .await
                .map_err(|e| self.fail("cannot list", &dir, &e))?;
            while let Some(entry) = lister
                .try_next()
                .await
                .map_err(|e| self.fail("cannot list", &dir, &e))?
            {
                if entry.metadata().is_file() {
                    out.insert(entry.path().to_owned(), entry.metadata().content_length());
                }
            }
            Ok(out)
        })
    }

    /// The objects directly under `dir/`: name → size.
    ///
    /// # Errors
    /// [`Error::Offsite`].
    pub fn names(&self, dir: &str) -> Result<BTreeMap<String, u64>> {
        let lead = format!("{}/", dir.trim_end_matches('/'));
        Ok(self
            .list(dir)?
            .into_iter()
            .filter_map(|(k, s)| {
                let name = k.strip_prefix(&lead)?;
                (!name.contains('/')).then(|| (name.to_owned(), s))
            })
            .collect())
    }

    /// What the store says of `key`; `None` when there is no such object.
    ///
    /// # Errors
    /// [`Error::Offsite`].
    pub fn stat(&self, key: &str) -> Result<Option<ObjectInfo>> {
        self.block_on(self.stat_async(key))
    }

    async fn stat_async(&self, key: &str) -> Result<Option<ObjectInfo>> {
        match self.op.stat(key).await {
            Ok(m) => Ok(Some(object_info(&m))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.fail("cannot look at", key, &e)),
        }
    }

    /// [`Store::stat`] of many keys, `jobs` at a time, in the given order.
    ///
    /// # Errors
    /// The first [`Error::Offsite`].
    pub fn stat_many(&self, keys: &[String]) -> Result<Vec<Option<ObjectInfo>>> {
        self.block_on(
            futures::stream::iter(keys.iter().map(|k| self.stat_async(k)))
                .buffered(self.jobs)
                .try_collect(),
        )
    }

    /// Upload `bytes` as `key` and check the store's answer.
    ///
    /// # Errors
    /// [`Error::Offsite`].
    pub fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<Uploaded> {
        self.block_on(self.put_bytes_async(key, bytes))
    }

    async fn put_bytes_async(&self, key: &str, bytes: Vec<u8>) -> Result<Uploaded> {
        let mut h = Md5::new();
        h.update(&bytes);
        let md5 = hex(h);
        let size = bytes.len() as u64;
        let meta = self
            .op
            .write_with(key, bytes)
            .user_metadata(md5_metadata(&md5))
            .await
            .map_err(|e| self.fail("cannot upload", key, &e))?;
        self.confirm(key, size, &md5, meta.etag(), false).await?;
        Ok(Uploaded { size, md5 })
    }

    /// Upload the file `path` as `key`: one request up to [`PART_SIZE`],
    /// else a multipart upload (parts of [`PART_SIZE`], the store checking
    /// each part's CRC32C). The result is checked: the ETag of a
    /// single-part upload must be the md5 we computed, and a multipart
    /// object must have the file's size.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, [`Error::Offsite`].
    pub fn put_file(&self, path: &Path, key: &str) -> Result<Uploaded> {
        self.block_on(self.put_file_async(path, key))
    }

    /// Upload many `(local file, key)` pairs, `jobs` at a time; `done` is
    /// called after each confirmed upload, in completion order.
    ///
    /// # Errors
    /// The first failure; uploads already confirmed stay (and were
    /// reported to `done`).
    pub fn put_files<F>(&self, files: &[(std::path::PathBuf, String)], mut done: F) -> Result<()>
    where
        F: FnMut(usize, &Uploaded) -> Result<()>,
    {
        self.block_on(async {
            let mut s =
                futures::stream::iter(files.iter().enumerate().map(|(i, (p, k))| async move {
                    self.put_file_async(p, k).await.map(|u| (i, u))
                }))
                .buffer_unordered(self.jobs);
            while let Some(r) = s.next().await {
                let (i, u) = r?;
                done(i, &u)?;
            }
            Ok(())
        })
    }

    async fn put_file_async(&self, path: &Path, key: &str) -> Result<Uploaded> {
        let mut f = crate::fsutil::open_regular(path).at(path)?;
        let len = f.metadata().at(path)?.len();
        if len <= PART_SIZE as u64 {
            let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            f.read_to_end(&mut buf).at(path)?;
            return self.put_bytes_async(key, buf).await;
        }
        // Large: the md5 must be in the metadata before the first part
        // goes, so the file is read twice (the second read is usually
        // served from the page cache).
        let md5 = md5_of_file(path)?;
        let mut w = self
            .op
            .writer_with(key)
            .chunk(PART_SIZE)
            .concurrent(2)
            .user_metadata(md5_metadata(&md5))
            .await
            .map_err(|e| self.fail("cannot upload", key, &e))?;
        let mut sent = 0u64;
        let mut hasher = Md5::new();
        loop {
            let mut buf = vec![0u8; PART_SIZE];
            let n = fill(&mut f, &mut buf).at(path)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            hasher.update(&buf);
            sent += n as u64;
            if let Err(e) = w.write(buf).await {
                let _ = w.abort().await;
                return Err(self.fail("cannot upload", key, &e));
            }
        }
        if hex(hasher) != md5 || sent != len {
            let _ = w.abort().await;
            return Err(Error::Offsite(format!(
                "{}: {} changed while it was uploaded; nothing was kept",
                self.url,
                path.display()
            )));
        }
        let meta = match w.close().await {
            Ok(m) => m,
            Err(e) => {
                let _ = w.abort().await;
                return Err(self.fail("cannot upload", key, &e));
            }
        };
        self.confirm(key, sent, &md5, meta.etag(), true).await?;
        Ok(Uploaded { size: sent, md5 })
    }

    /// Check what the store answered to an upload: a single-part ETag
    /// is the md5 of what it stored; otherwise ask for the object's size.
    async fn confirm(
        &self,
        key: &str,
        size: u64,
        md5: &str,
        etag: Option<&str>,
        multipart: bool,
    ) -> Result<()> {
        let etag = etag.map(|e| e.trim_matches('"').to_ascii_lowercase());
        // With server-side encryption (SSE-KMS, SSE-C) a single-part ETag
        // is not the md5: then the size is what is compared (each request
        // body was checked by its CRC32C already).
        if !multipart && etag.as_deref() == Some(md5) {
            return Ok(());
        }
        match self.stat_async(key).await? {
            Some(info) if info.size == size => Ok(()),
            Some(info) => Err(Error::Offsite(format!(
                "{}: the store kept {key} with {} bytes, not the {size} that were sent",
                self.url, info.size
            ))),
            None => Err(Error::Offsite(format!(
                "{}: the store does not show {key} after its upload",
                self.url
            ))),
        }
    }

    /// Download `key` into `dest` (a temporary name beside it, fsync,
    /// rename), checking its md5 against `md5` when given. Returns the
    /// md5 of what was written.
    ///
    /// # Errors
    /// [`Error::Offsite`], [`Error::Io`].
    pub fn get_file(&self, key: &str, dest: &Path, md5: Option<&str>) -> Result<String> {
        self.block_on(self.get_file_async(key, dest, md5, None))
    }

    /// [`Store::get_file`] for many `(key, dest, md5)`, `jobs` at a time.
    ///
    /// # Errors
    /// The first failure.
    pub fn get_files(&self, files: &[Download]) -> Result<()> {
        self.block_on(
            futures::stream::iter(
                files
                    .iter()
                    .map(|d| self.get_file_async(&d.key, &d.dest, d.md5.as_deref(), d.mode)),
            )
            .buffer_unordered(self.jobs)
            .try_collect::<Vec<_>>(),
        )
        .map(|_| ())
    }

    async fn get_file_async(
        &self,
        key: &str,
        dest: &Path,
        md5: Option<&str>,
        mode: Option<u32>,
    ) -> Result<String> {
        let dir = crate::fsutil::parent_dir(dest);
        std::fs::create_dir_all(dir).at(dir)?;
        // The repository's own temporary name: the next backup removes it
        // if this pull dies.
        let mut tmp = crate::fsutil::temp_beside(dest)?;
        let reader = self
            .op
            .reader_with(key)
            .chunk(PART_SIZE)
            .await
            .map_err(|e| self.fail("cannot download", key, &e))?;
        let mut stream = reader
            .into_bytes_stream(..)
            .await
            .map_err(|e| self.fail("cannot download", key, &e))?;
        let mut hasher = Md5::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                Error::Offsite(format!(
                    "{}: cannot download {key}: {}",
                    self.url,
                    strip_os_error(&e.to_string())
                ))
            })?;
            hasher.update(&chunk);
            tmp.write_all(&chunk).at(tmp.path())?;
        }
        let got = hex(hasher);
        if let Some(want) = md5 {
            if got != want {
                return Err(Error::Offsite(format!(
                    "{}: {key} has md5 {got}, not the {want} its manifest records",
                    self.url
                )));
            }
        }
        // Permission bits only (a manifest cannot make a file setuid), set
        // before the file gets its name.
        if let Some(mode) = mode.map(|m| m & 0o777) {
            use std::os::unix::fs::PermissionsExt as _;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))
                .at(tmp.path())?;
        }
        crate::fsutil::persist_synced(tmp, dest)?;
        Ok(got)
    }

    /// The whole object `key`, for small objects (manifests, `.dat`).
    /// `None` when there is no such object.
    ///
    /// # Errors
    /// [`Error::Offsite`].
    pub fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.block_on(async {
            match self.op.read(key).await {
                Ok(b) => Ok(Some(b.to_vec())),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.fail("cannot download", key, &e)),
            }
        })
    }

    /// Delete `keys` (a missing one is no error).
    ///
    /// # Errors
    /// [`Error::Offsite`].
    pub fn delete(&self, keys: &[String]) -> Result<()> {
        self.block_on(async {
            for key in keys {
                match self.op.delete(key).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(self.fail("cannot delete", key, &e)),
                }
            }
            Ok(())
        })
    }
}

fn md5_metadata(md5: &str) -> HashMap<String, String> {
    HashMap::from([(MD5_KEY.to_owned(), md5.to_owned())])
}

fn object_info(m: &opendal::Metadata) -> ObjectInfo {
    ObjectInfo {
        size: m.content_length(),
        md5_sent: m
            .user_metadata()
            .and_then(|u| u.get(MD5_KEY).map(str::to_owned)),
        etag: m.etag().map(|e| e.trim_matches('"').to_ascii_lowercase()),
    }
}

/// md5 (hex) of a whole file.
///
/// # Errors
/// [`Error::Io`].
pub fn md5_of_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).at(path)?;
    md5_of(&mut f, &NoProgress).map(|(_, h)| h).at(path)
}

/// `" (os error 111)"` is Rust's; an admin reads Python's and curl's words.
fn strip_os_error(s: &str) -> String {
    let mut out = s.to_owned();
    while let Some(i) = out.find(" (os error ") {
        match out[i..].find(')') {
            Some(j) => out.replace_range(i..i + j + 1, ""),
            None => break,
        }
    }
    out
}

/// A retry is no news for the admin unless it fails in the end (then the
/// error says why): one DEBUG line, not OpenDAL's multi-line warning.
fn log_retry(event: opendal::layers::RetryEvent<'_>) {
    log::debug!(
        "retrying {:?} (attempt {}) in {:.1}s: {}",
        event.op,
        event.attempt,
        event.retry_after.as_secs_f64(),
        strip_os_error(event.err.message())
    );
}

/// One line for an OpenDAL error: what S3 said (its error code), or why
/// the store could not be reached.
fn describe(e: &opendal::Error, endpoint: &str) -> String {
    let mut root: &dyn std::error::Error = e;
    while let Some(next) = root.source() {
        root = next;
    }
    let code = s3_code(e.message()).or_else(|| s3_code(&e.to_string()));
    match e.kind() {
        ErrorKind::PermissionDenied => format!(
            "access denied ({}): check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or offsite_credentials)",
            code.unwrap_or_else(|| "AccessDenied".to_owned())
        ),
        ErrorKind::NotFound => format!(
            "not found ({})",
            code.unwrap_or_else(|| "NoSuchKey".to_owned())
        ),
        ErrorKind::ConfigInvalid => format!("invalid configuration: {}", e.message()),
        _ => {
            if let Some(code) = code {
                format!("the store answered {code}")
            } else {
                let why = strip_os_error(&root.to_string());
                let why = if why.is_empty() { e.message().to_owned() } else { why };
                format!("cannot reach {endpoint}: {why}")
            }
        }
    }
}

/// The `<Code>...</Code>` of an S3 error body.
fn s3_code(text: &str) -> Option<String> {
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")? + start;
    Some(text[start..end].to_owned())
}

/// Shared handle for parallel callers.
pub type SharedStore = Arc<Store>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_rust_os_error() {
        assert_eq!(
            strip_os_error("tcp connect error: Connection refused (os error 111)"),
            "tcp connect error: Connection refused"
        );
    }

    #[test]
    fn reads_s3_error_code() {
        assert_eq!(
            s3_code("<Error><Code>InvalidAccessKeyId</Code></Error>").as_deref(),
            Some("InvalidAccessKeyId")
        );
        assert_eq!(s3_code("nothing"), None);
    }
}
