//! The image records in SQLite: Glance's `images` table with
//! `image_properties`, `image_tags` and `image_members` beside it.
//!
//! Every write is one transaction; the file is in WAL mode with
//! `synchronous=FULL`, so an answered request's record survives a crash.
//! Calls run on the blocking pool, one connection behind a mutex (image
//! catalogs see few writes; the data path never waits on them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, Row};

#[derive(Debug)]
pub enum CatalogError {
    Sqlite(rusqlite::Error),
    /// The blocking task did not finish (the runtime is shutting down).
    Interrupted,
}

impl std::fmt::Display for CatalogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogError::Sqlite(e) => write!(f, "image catalog: {e}"),
            CatalogError::Interrupted => f.write_str("image catalog: interrupted"),
        }
    }
}

impl std::error::Error for CatalogError {}

impl From<rusqlite::Error> for CatalogError {
    fn from(e: rusqlite::Error) -> Self {
        CatalogError::Sqlite(e)
    }
}

/// One image: Glance's base attributes, its custom properties and tags.
/// Times are apus timestamps' ticks (10 µs since the epoch).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Image {
    pub id: String,
    pub name: Option<String>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub size: Option<i64>,
    pub virtual_size: Option<i64>,
    pub status: String,
    pub visibility: String,
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    pub min_disk: i64,
    pub min_ram: i64,
    pub protected: bool,
    pub os_hidden: bool,
    pub owner: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// How many SLO segments hold the data (0: none, or an empty image).
    pub segments: i64,
    pub properties: BTreeMap<String, String>,
    pub tags: BTreeSet<String>,
}

/// One project an image is shared with.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub image_id: String,
    pub member: String,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    name TEXT,
    disk_format TEXT,
    container_format TEXT,
    size INTEGER,
    virtual_size INTEGER,
    status TEXT NOT NULL,
    visibility TEXT NOT NULL,
    checksum TEXT,
    os_hash_algo TEXT,
    os_hash_value TEXT,
    min_disk INTEGER NOT NULL DEFAULT 0,
    min_ram INTEGER NOT NULL DEFAULT 0,
    protected INTEGER NOT NULL DEFAULT 0,
    os_hidden INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    segments INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS image_properties (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (image_id, name)
);
CREATE TABLE IF NOT EXISTS image_tags (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    value TEXT NOT NULL,
    PRIMARY KEY (image_id, value)
);
CREATE TABLE IF NOT EXISTS image_members (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    member TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (image_id, member)
);
CREATE INDEX IF NOT EXISTS image_members_by_member ON image_members (member);
";

const IMAGE_COLUMNS: &str = "id, name, disk_format, container_format, size, virtual_size, \
     status, visibility, checksum, os_hash_algo, os_hash_value, min_disk, min_ram, protected, \
     os_hidden, owner, created_at, updated_at, segments";

fn image_from_row(row: &Row<'_>) -> rusqlite::Result<Image> {
    Ok(Image {
        id: row.get(0)?,
        name: row.get(1)?,
        disk_format: row.get(2)?,
        container_format: row.get(3)?,
        size: row.get(4)?,
        virtual_size: row.get(5)?,
        status: row.get(6)?,
        visibility: row.get(7)?,
        checksum: row.get(8)?,
        os_hash_algo: row.get(9)?,
        os_hash_value: row.get(10)?,
        min_disk: row.get(11)?,
        min_ram: row.get(12)?,
        protected: row.get(13)?,
        os_hidden: row.get(14)?,
        owner: row.get(15)?,
        created_at: row.get(16)?,
        updated_at: row.get(17)?,
        segments: row.get(18)?,
        properties: BTreeMap::new(),
        tags: BTreeSet::new(),
    })
}

/// The catalog: one SQLite connection shared by the service's requests.
#[derive(Clone)]
pub struct Catalog {
    conn: Arc<Mutex<Connection>>,
}

impl Catalog {
    /// Opens (creating when missing) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    CatalogError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
                })?;
            }
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Catalog {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection, on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, CatalogError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard).map_err(CatalogError::from)
        })
        .await
        .map_err(|_| CatalogError::Interrupted)?
    }
}

/// The image `id` with its properties and tags.
pub fn get_image(conn: &Connection, id: &str) -> rusqlite::Result<Option<Image>> {
    let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?1");
    let image = conn
        .query_row(&sql, params![id], image_from_row)
        .optional()?;
    match image {
        Some(mut image) => {
            fill_details(conn, &mut image)?;
            Ok(Some(image))
        }
        None => Ok(None),
    }
}

/// Loads `image`'s properties and tags.
pub fn fill_details(conn: &Connection, image: &mut Image) -> rusqlite::Result<()> {
    let mut stmt =
        conn.prepare_cached("SELECT name, value FROM image_properties WHERE image_id = ?1")?;
    let props = stmt.query_map(params![image.id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    image.properties = props.collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare_cached("SELECT value FROM image_tags WHERE image_id = ?1")?;
    let tags = stmt.query_map(params![image.id], |r| r.get(0))?;
    image.tags = tags.collect::<rusqlite::Result<_>>()?;
    Ok(())
}

/// Every image's base attributes (no properties or tags), for listings.
pub fn all_images(conn: &Connection) -> rusqlite::Result<Vec<Image>> {
    let sql = format!("SELECT {IMAGE_COLUMNS} FROM images");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], image_from_row)?;
    rows.collect()
}

/// Inserts a new image; `false` when the id is taken.
pub fn insert_image(conn: &mut Connection, image: &Image) -> rusqlite::Result<bool> {
    write_if(conn, image, false)
}

/// Replaces an existing image's record; `false` when it is gone.
pub fn save_image(conn: &mut Connection, image: &Image) -> rusqlite::Result<bool> {
    write_if(conn, image, true)
}

/// Writes `image` in one transaction if its record exists (`existing`)
/// or does not (`!existing`); whether it did.
fn write_if(conn: &mut Connection, image: &Image, existing: bool) -> rusqlite::Result<bool> {
    let tx = conn.transaction()?;
    let exists: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM images WHERE id = ?1",
            params![image.id],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_some() != existing {
        return Ok(false);
    }
    write_image(&tx, image)?;
    tx.commit()?;
    Ok(true)
}

fn write_image(tx: &rusqlite::Transaction<'_>, image: &Image) -> rusqlite::Result<()> {
    tx.execute(
        &format!(
            "INSERT OR REPLACE INTO images ({IMAGE_COLUMNS}) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
        ),
        params![
            image.id,
            image.name,
            image.disk_format,
            image.container_format,
            image.size,
            image.virtual_size,
            image.status,
            image.visibility,
            image.checksum,
            image.os_hash_algo,
            image.os_hash_value,
            image.min_disk,
            image.min_ram,
            image.protected,
            image.os_hidden,
            image.owner,
            image.created_at,
            image.updated_at,
            image.segments,
        ],
    )?;
    tx.execute(
        "DELETE FROM image_properties WHERE image_id = ?1",
        params![image.id],
    )?;
    for (name, value) in &image.properties {
        tx.execute(
            "INSERT INTO image_properties (image_id, name, value) VALUES (?1, ?2, ?3)",
            params![image.id, name, value],
        )?;
    }
    tx.execute(
        "DELETE FROM image_tags WHERE image_id = ?1",
        params![image.id],
    )?;
    for tag in &image.tags {
        tx.execute(
            "INSERT INTO image_tags (image_id, value) VALUES (?1, ?2)",
            params![image.id, tag],
        )?;
    }
    Ok(())
}

/// Moves an image from status `from` to `to`; `false` when it was not in
/// `from` (or is gone): the compare-and-set that lets one upload in.
pub fn transition(
    conn: &Connection,
    id: &str,
    from: &str,
    to: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE images SET status = ?3, updated_at = ?4 WHERE id = ?1 AND status = ?2",
        params![id, from, to, now],
    )?;
    Ok(n == 1)
}

/// Records uploaded data and makes the image active, if it is still
/// being saved; `false` otherwise (deleted meanwhile).
#[allow(clippy::too_many_arguments)]
pub fn activate(
    conn: &Connection,
    id: &str,
    size: i64,
    checksum: &str,
    hash_algo: &str,
    hash_value: &str,
    segments: i64,
    now: i64,
) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE images SET status = 'active', size = ?2, checksum = ?3, os_hash_algo = ?4, \
         os_hash_value = ?5, segments = ?6, updated_at = ?7 WHERE id = ?1 AND status = 'saving'",
        params![id, size, checksum, hash_algo, hash_value, segments, now],
    )?;
    Ok(n == 1)
}

/// Removes an image and everything attached to it; `false` when it was
/// already gone.
pub fn delete_image(conn: &mut Connection, id: &str) -> rusqlite::Result<bool> {
    let tx = conn.transaction()?;
    tx.execute(
        "DELETE FROM image_properties WHERE image_id = ?1",
        params![id],
    )?;
    tx.execute("DELETE FROM image_tags WHERE image_id = ?1", params![id])?;
    tx.execute("DELETE FROM image_members WHERE image_id = ?1", params![id])?;
    let n = tx.execute("DELETE FROM images WHERE id = ?1", params![id])?;
    tx.commit()?;
    Ok(n == 1)
}

fn member_from_row(row: &Row<'_>) -> rusqlite::Result<Member> {
    Ok(Member {
        image_id: row.get(0)?,
        member: row.get(1)?,
        status: row.get(2)?,
        created_at: row.get(3)?,
        updated_at: row.get(4)?,
    })
}

pub fn members(conn: &Connection, image_id: &str) -> rusqlite::Result<Vec<Member>> {
    let mut stmt = conn.prepare_cached(
        "SELECT image_id, member, status, created_at, updated_at FROM image_members \
         WHERE image_id = ?1 ORDER BY created_at, member",
    )?;
    let rows = stmt.query_map(params![image_id], member_from_row)?;
    rows.collect()
}

pub fn member(conn: &Connection, image_id: &str, member: &str) -> rusqlite::Result<Option<Member>> {
    conn.query_row(
        "SELECT image_id, member, status, created_at, updated_at FROM image_members \
         WHERE image_id = ?1 AND member = ?2",
        params![image_id, member],
        member_from_row,
    )
    .optional()
}

/// The status of `project`'s membership of each image it is a member of.
pub fn memberships(conn: &Connection, project: &str) -> rusqlite::Result<BTreeMap<String, String>> {
    let mut stmt =
        conn.prepare_cached("SELECT image_id, status FROM image_members WHERE member = ?1")?;
    let rows = stmt.query_map(params![project], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Adds a member; `false` when it already is one.
pub fn add_member(conn: &Connection, m: &Member) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO image_members (image_id, member, status, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![m.image_id, m.member, m.status, m.created_at, m.updated_at],
    )?;
    Ok(n == 1)
}

pub fn set_member_status(
    conn: &Connection,
    image_id: &str,
    member: &str,
    status: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE image_members SET status = ?3, updated_at = ?4 WHERE image_id = ?1 AND member = ?2",
        params![image_id, member, status, now],
    )?;
    Ok(n == 1)
}

pub fn remove_member(conn: &Connection, image_id: &str, member: &str) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "DELETE FROM image_members WHERE image_id = ?1 AND member = ?2",
        params![image_id, member],
    )?;
    Ok(n == 1)
}

pub fn count_members(conn: &Connection, image_id: &str) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COUNT(*) FROM image_members WHERE image_id = ?1",
        params![image_id],
        |r| r.get(0),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample(id: &str) -> Image {
        let mut image = Image {
            id: id.to_string(),
            name: Some("cirros".into()),
            status: "queued".into(),
            visibility: "shared".into(),
            owner: Some("p1".into()),
            created_at: 5,
            updated_at: 5,
            ..Image::default()
        };
        image.properties.insert("os_distro".into(), "cirros".into());
        image.tags.insert("small".into());
        image
    }

    #[tokio::test]
    async fn records_survive_reopening_and_upload_is_a_compare_and_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.db");
        let catalog = Catalog::open(&path).unwrap();
        let inserted = catalog
            .run(|c| insert_image(c, &sample("a")))
            .await
            .unwrap();
        assert!(inserted);
        let again = catalog
            .run(|c| insert_image(c, &sample("a")))
            .await
            .unwrap();
        assert!(!again, "a taken id is refused");
        drop(catalog);

        let catalog = Catalog::open(&path).unwrap();
        let image = catalog.run(|c| get_image(c, "a")).await.unwrap().unwrap();
        assert_eq!(image, sample("a"));
        let first = catalog
            .run(|c| transition(c, "a", "queued", "saving", 6))
            .await
            .unwrap();
        let second = catalog
            .run(|c| transition(c, "a", "queued", "saving", 7))
            .await
            .unwrap();
        assert!(first && !second, "only one upload may start");
        let active = catalog
            .run(|c| activate(c, "a", 3, "md5", "sha512", "h", 1, 8))
            .await
            .unwrap();
        assert!(active);
        let image = catalog.run(|c| get_image(c, "a")).await.unwrap().unwrap();
        assert_eq!(
            (image.status.as_str(), image.size, image.segments),
            ("active", Some(3), 1)
        );
    }

    #[tokio::test]
    async fn deleting_an_image_takes_its_properties_tags_and_members() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("images.db")).unwrap();
        catalog
            .run(|c| {
                insert_image(c, &sample("a"))?;
                add_member(
                    c,
                    &Member {
                        image_id: "a".into(),
                        member: "p2".into(),
                        status: "pending".into(),
                        created_at: 1,
                        updated_at: 1,
                    },
                )
            })
            .await
            .unwrap();
        let counts = catalog
            .run(|c| {
                assert!(delete_image(c, "a")?);
                let n: i64 = c.query_row(
                    "SELECT (SELECT COUNT(*) FROM image_properties) + \
                     (SELECT COUNT(*) FROM image_tags) + (SELECT COUNT(*) FROM image_members)",
                    [],
                    |r| r.get(0),
                )?;
                Ok((n, delete_image(c, "a")?))
            })
            .await
            .unwrap();
        assert_eq!(counts, (0, false));
    }
}
