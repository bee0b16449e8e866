//! The share log: every share, in daily files, in the order it was counted.
//!
//! `<dir>/sharelog-YYYY-MM-DD.bin`, by the UTC day of the share's timestamp.
//! A file is a 16-byte magic line (`SLUICE-SHARELOG2`), the topic it holds
//! the shares of (`u16 LE length ‖ kafka-cluster=<id> topic=<name>`), and
//! then records: `u32 LE length ‖ i32 LE partition ‖ i64 LE offset ‖ Share
//! protobuf` (`length` counts the protobuf bytes). A file is written only
//! from its own topic: opened for another cluster's or topic's shares it is
//! refused ([`ShareLogError::Foreign`]), so a pool never counts another's.
//! Files of the first format (`SLUICE-SHARELOG1`, no owner) are read, and
//! appended to, as they are. The Kafka partition and offset make
//! each share's place in the topic part of the file: a writer that restarts
//! skips what the file already holds, so a share is written once even when
//! the topic delivers it twice. A torn record at the end (a crash mid-write)
//! is cut off when the file is opened again.
//!
//! The Share message carries everything needed to rebuild the header and
//! check its hash against the Job topic (`sharelog verify`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sluice_bus::TopicOwner;
use sluice_core::record::ShareRecord;
use sluice_proto::Payload;

use crate::clock::day_of;

const MAGIC: &[u8; 16] = b"SLUICE-SHARELOG2";
/// The first format: no owner after the magic.
const MAGIC_V1: &[u8; 16] = b"SLUICE-SHARELOG1";
const HEADER: usize = 16;
/// An owner line is a cluster id and a topic name; anything longer is not one.
const MAX_OWNER: u16 = 1024;
/// A Share message is a few hundred bytes; anything near this is corruption.
const MAX_RECORD: u32 = 64 * 1024;
/// Files kept open for appending: today, yesterday and one straggler.
const OPEN_FILES: usize = 3;

/// Why the share log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ShareLogError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a share log, or a record in it is damaged.
    #[error("{path}: {what} at byte {at}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
        /// Where.
        at: u64,
    },
    /// The file holds another topic's shares (another pool's share log).
    #[error(
        "{path} holds the shares of {found}, not of {expected} that this statshttpd reads: \
         another pool's share log (give this pool a data_dir of its own, or move the file away)"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Whose shares it holds.
        found: TopicOwner,
        /// Whose this statshttpd counts.
        expected: TopicOwner,
    },
}

/// Whose shares a file holds, as its header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    /// No file, or nothing complete in it yet.
    Missing,
    /// The first format, which named no owner.
    Legacy,
    /// The topic (and cluster) its shares come from.
    Owned(TopicOwner),
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Share topic partition.
    pub partition: i32,
    /// Offset in it.
    pub offset: i64,
    /// The share.
    pub share: ShareRecord,
}

/// The file of day YYYYMMDD in `dir`.
pub fn path_of(dir: &Path, day: u32) -> PathBuf {
    dir.join(format!(
        "sharelog-{:04}-{:02}-{:02}.bin",
        day / 10_000,
        day / 100 % 100,
        day % 100
    ))
}

/// Reads every complete record of `path` in order, calling `each`. Returns
/// the byte length of the complete part (a torn last record is not an
/// error: it is where a crash stopped a write). A missing file reads as
/// empty.
pub fn read(path: &Path, each: impl FnMut(Entry)) -> Result<u64, ShareLogError> {
    read_with_header(path, each).map(|(_, complete)| complete)
}

/// Whose shares `path` holds.
pub fn header(path: &Path) -> Result<Header, ShareLogError> {
    let io = |source| ShareLogError::Io {
        path: path.to_owned(),
        source,
    };
    match File::open(path) {
        Ok(f) => read_header(path, &mut BufReader::new(f)).map(|(h, _)| h),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Header::Missing),
        Err(e) => Err(io(e)),
    }
}

/// Fails unless `path` is missing, of the first format, or `expected`'s.
pub fn check_owner(path: &Path, expected: &TopicOwner) -> Result<Header, ShareLogError> {
    match header(path)? {
        Header::Owned(found) if found != *expected => Err(ShareLogError::Foreign {
            path: path.to_owned(),
            found,
            expected: expected.clone(),
        }),
        header => Ok(header),
    }
}

/// The header of the file `r` reads and the bytes it takes; an incomplete
/// header (a crash while the file was begun) reads as [`Header::Missing`].
fn read_header(path: &Path, r: &mut impl Read) -> Result<(Header, u64), ShareLogError> {
    let io = |source| ShareLogError::Io {
        path: path.to_owned(),
        source,
    };
    let corrupt = |what: String, at: u64| ShareLogError::Corrupt {
        path: path.to_owned(),
        what,
        at,
    };
    let mut magic = [0u8; HEADER];
    match read_full(r, &mut magic).map_err(io)? {
        0 => return Ok((Header::Missing, 0)),
        HEADER if &magic == MAGIC_V1 => return Ok((Header::Legacy, HEADER as u64)),
        HEADER if &magic == MAGIC => {}
        _ => return Err(corrupt("not a share log (bad magic)".into(), 0)),
    }
    let mut len = [0u8; 2];
    if read_full(r, &mut len).map_err(io)? < len.len() {
        return Ok((Header::Missing, 0));
    }
    let len = u16::from_le_bytes(len);
    if len > MAX_OWNER {
        return Err(corrupt(format!("owner length {len}"), HEADER as u64));
    }
    let mut line = vec![0u8; usize::from(len)];
    if read_full(r, &mut line).map_err(io)? < line.len() {
        return Ok((Header::Missing, 0));
    }
    let owner = std::str::from_utf8(&line)
        .ok()
        .and_then(TopicOwner::from_line)
        .ok_or_else(|| corrupt("unreadable owner".into(), HEADER as u64 + 2))?;
    Ok((Header::Owned(owner), (HEADER + 2) as u64 + u64::from(len)))
}

/// The header of a new file owned by `owner`.
fn header_bytes(owner: &TopicOwner) -> Vec<u8> {
    let line = owner.to_line();
    let mut out = Vec::with_capacity(HEADER + 2 + line.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(line.len() as u16).to_le_bytes());
    out.extend_from_slice(line.as_bytes());
    out
}

/// [`read`], with the file's header.
pub fn read_with_header(
    path: &Path,
    mut each: impl FnMut(Entry),
) -> Result<(Header, u64), ShareLogError> {
    let io = |source| ShareLogError::Io {
        path: path.to_owned(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Header::Missing, 0)),
        Err(e) => return Err(io(e)),
    };
    let mut r = BufReader::with_capacity(1 << 20, file);
    let corrupt = |what: &str, at: u64| ShareLogError::Corrupt {
        path: path.to_owned(),
        what: what.to_owned(),
        at,
    };
    let (header, mut at) = read_header(path, &mut r)?;
    if header == Header::Missing {
        return Ok((header, 0));
    }
    let mut head = [0u8; 16];
    let mut body = Vec::new();
    loop {
        if read_full(&mut r, &mut head).map_err(io)? < head.len() {
            return Ok((header, at));
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if len > MAX_RECORD {
            return Err(corrupt(&format!("record length {len}"), at));
        }
        let partition = i32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let mut o = [0u8; 8];
        o.copy_from_slice(&head[8..16]);
        let offset = i64::from_le_bytes(o);
        body.resize(len as usize, 0);
        if read_full(&mut r, &mut body).map_err(io)? < body.len() {
            return Ok((header, at));
        }
        let share = ShareRecord::decode_from(&body)
            .map_err(|e| corrupt(&format!("undecodable share: {e}"), at))?;
        each(Entry {
            partition,
            offset,
            share,
        });
        at += 16 + u64::from(len);
    }
}

/// Reads until `buf` is full or the end; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

struct OpenDay {
    day: u32,
    path: PathBuf,
    out: BufWriter<File>,
    /// The highest offset per partition the file holds.
    last: HashMap<i32, i64>,
    used: u64,
}

/// Appends shares to their day's file, each (partition, offset) once.
pub struct Writer {
    dir: PathBuf,
    /// The topic whose shares are written: a file of another is refused.
    owner: TopicOwner,
    open: Vec<OpenDay>,
    tick: u64,
    /// Partitions whose logged offsets belong to an older log of the topic
    /// ([`Writer::forget`]): files opened later do not dedupe them.
    forgotten: std::collections::HashSet<i32>,
}

impl Writer {
    /// Writes `owner`'s shares into `dir` (created if missing).
    pub fn new(dir: &Path, owner: TopicOwner) -> Result<Self, ShareLogError> {
        std::fs::create_dir_all(dir).map_err(|source| ShareLogError::Io {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Writer {
            dir: dir.to_owned(),
            owner,
            open: Vec::new(),
            tick: 0,
            forgotten: std::collections::HashSet::new(),
        })
    }

    /// Forgets the offsets logged for `partition`: the topic was recreated
    /// and numbers its records from 0 again, so an offset already logged is
    /// no longer the same share.
    pub fn forget(&mut self, partition: i32) {
        for f in &mut self.open {
            f.last.remove(&partition);
        }
        self.forgotten.insert(partition);
    }

    /// Appends `share` unless its day's file already holds
    /// (`partition`, `offset`) or a later offset of that partition. Returns
    /// whether it was written.
    pub fn append(
        &mut self,
        partition: i32,
        offset: i64,
        share: &ShareRecord,
    ) -> Result<bool, ShareLogError> {
        let day = day_of(share.timestamp_ms);
        let i = self.day_file(day)?;
        self.tick += 1;
        let f = &mut self.open[i];
        f.used = self.tick;
        if f.last.get(&partition).is_some_and(|&l| offset <= l) {
            return Ok(false);
        }
        let body = share.encode_to_vec();
        let mut rec = Vec::with_capacity(16 + body.len());
        rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
        rec.extend_from_slice(&partition.to_le_bytes());
        rec.extend_from_slice(&offset.to_le_bytes());
        rec.extend_from_slice(&body);
        f.out.write_all(&rec).map_err(|source| ShareLogError::Io {
            path: f.path.clone(),
            source,
        })?;
        f.last.insert(partition, offset);
        Ok(true)
    }

    /// Flushes and fsyncs every open file: what was appended is on disk.
    pub fn sync(&mut self) -> Result<(), ShareLogError> {
        for f in &mut self.open {
            f.out
                .flush()
                .and_then(|()| f.out.get_ref().sync_data())
                .map_err(|source| ShareLogError::Io {
                    path: f.path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// The highest offset per partition held by the file of `day`, opening
    /// it if needed.
    pub fn last_offsets(&mut self, day: u32) -> Result<HashMap<i32, i64>, ShareLogError> {
        let i = self.day_file(day)?;
        Ok(self.open[i].last.clone())
    }

    fn day_file(&mut self, day: u32) -> Result<usize, ShareLogError> {
        if let Some(i) = self.open.iter().position(|f| f.day == day) {
            return Ok(i);
        }
        if self.open.len() >= OPEN_FILES {
            self.sync()?;
            let lru = (0..self.open.len())
                .min_by_key(|&i| self.open[i].used)
                .unwrap_or(0);
            self.open.swap_remove(lru);
        }
        let path = path_of(&self.dir, day);
        if check_owner(&path, &self.owner)? == Header::Legacy {
            tracing::warn!(path = %path.display(), owner = %self.owner,
                "appending to a share log of the first format, which names no owner");
        }
        // The last entry of each partition, not the highest: after a topic
        // was recreated the file goes on with the new log's lower offsets.
        let mut last = HashMap::new();
        let complete = read(&path, |e| {
            if !self.forgotten.contains(&e.partition) {
                last.insert(e.partition, e.offset);
            }
        })?;
        let io = |source| ShareLogError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        if complete == 0 {
            file.set_len(0).map_err(io)?;
            file.write_all(&header_bytes(&self.owner)).map_err(io)?;
        } else {
            let len = file.metadata().map_err(io)?.len();
            if len > complete {
                tracing::warn!(path = %path.display(), torn = len - complete,
                    "share log ends in a torn record (a crash mid-write); cutting it off");
                file.set_len(complete).map_err(io)?;
            }
            file.seek(SeekFrom::End(0)).map_err(io)?;
        }
        self.open.push(OpenDay {
            day,
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            last,
            used: self.tick,
        });
        Ok(self.open.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::tests::{T0, share};
    use sluice_core::ShareStatus;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sluice-sharelog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn owner() -> TopicOwner {
        TopicOwner {
            cluster_id: "6rW4jFrsRXOpvKwNx8rDjg".into(),
            topic: "BtcShare".into(),
        }
    }

    fn entries(path: &Path) -> Vec<Entry> {
        let mut v = Vec::new();
        read(path, |e| v.push(e)).unwrap();
        v
    }

    #[test]
    fn shares_go_to_their_day_once() {
        let d = dir("days");
        let mut w = Writer::new(&d, owner()).unwrap();
        let a = share(1, 11, 3, ShareStatus::Accepted, 2.0, T0);
        let b = share(1, 12, 3, ShareStatus::Stale, 4.0, T0 + 86_400_000);
        assert!(w.append(0, 5, &a).unwrap());
        assert!(w.append(1, 9, &b).unwrap());
        assert!(
            !w.append(0, 5, &a).unwrap(),
            "a redelivered share is skipped"
        );
        w.sync().unwrap();
        drop(w);
        // A new writer (a restart) knows what the files hold.
        let mut w = Writer::new(&d, owner()).unwrap();
        assert!(!w.append(0, 4, &a).unwrap());
        assert!(w.append(0, 6, &a).unwrap());
        w.sync().unwrap();
        let today = entries(&path_of(&d, 20_261_121));
        assert_eq!(
            today.iter().map(|e| e.offset).collect::<Vec<_>>(),
            vec![5, 6]
        );
        assert_eq!(today[0].share, a);
        let tomorrow = entries(&path_of(&d, 20_261_122));
        assert_eq!(
            tomorrow,
            vec![Entry {
                partition: 1,
                offset: 9,
                share: b
            }]
        );
        assert_eq!(w.last_offsets(20_261_121).unwrap(), HashMap::from([(0, 6)]));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_torn_record_is_cut_off_and_garbage_is_refused() {
        let d = dir("torn");
        let mut w = Writer::new(&d, owner()).unwrap();
        let a = share(1, 11, 3, ShareStatus::Accepted, 2.0, T0);
        w.append(0, 1, &a).unwrap();
        w.append(0, 2, &a).unwrap();
        w.sync().unwrap();
        drop(w);
        let path = path_of(&d, 20_261_121);
        let full = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(full - 3).unwrap();
        assert_eq!(
            entries(&path).len(),
            1,
            "the torn second record is not read"
        );
        let mut w = Writer::new(&d, owner()).unwrap();
        assert!(w.append(0, 2, &a).unwrap(), "and is written again");
        w.sync().unwrap();
        assert_eq!(entries(&path).len(), 2);
        std::fs::write(&path, b"not a share log at all").unwrap();
        let e = read(&path, |_| {}).unwrap_err().to_string();
        assert!(e.contains("bad magic"), "{e}");
        assert_eq!(read(&d.join("missing.bin"), |_| {}).unwrap(), 0);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_of_another_cluster_or_topic_is_refused_naming_both() {
        let d = dir("foreign");
        let a = share(1, 11, 3, ShareStatus::Accepted, 2.0, T0);
        let mut w = Writer::new(&d, owner()).unwrap();
        w.append(0, 1, &a).unwrap();
        w.sync().unwrap();
        drop(w);
        let path = path_of(&d, 20_261_121);
        assert_eq!(header(&path).unwrap(), Header::Owned(owner()));
        assert_eq!(entries(&path).len(), 1, "the owner line is no record");
        for other in [
            TopicOwner {
                cluster_id: "pool-b-cluster-id-xxxxx".into(),
                ..owner()
            },
            TopicOwner {
                topic: "OtherShare".into(),
                ..owner()
            },
        ] {
            let mut w = Writer::new(&d, other.clone()).unwrap();
            let e = w.append(0, 2, &a).unwrap_err().to_string();
            assert!(
                e.contains(&owner().to_string()) && e.contains(&other.to_string()),
                "names both: {e}"
            );
            assert!(check_owner(&path, &other).is_err());
        }
        assert_eq!(
            check_owner(&path, &owner()).unwrap(),
            Header::Owned(owner())
        );
        assert_eq!(entries(&path).len(), 1, "nothing written to it");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_of_the_first_format_is_read_and_appended_to() {
        let d = dir("legacy");
        std::fs::create_dir_all(&d).unwrap();
        let a = share(1, 11, 3, ShareStatus::Accepted, 2.0, T0);
        let body = a.encode_to_vec();
        let mut old = MAGIC_V1.to_vec();
        old.extend_from_slice(&(body.len() as u32).to_le_bytes());
        old.extend_from_slice(&0i32.to_le_bytes());
        old.extend_from_slice(&7i64.to_le_bytes());
        old.extend_from_slice(&body);
        let path = path_of(&d, 20_261_121);
        std::fs::write(&path, &old).unwrap();
        assert_eq!(header(&path).unwrap(), Header::Legacy);
        assert_eq!(entries(&path)[0].offset, 7);
        let mut w = Writer::new(&d, owner()).unwrap();
        assert!(!w.append(0, 7, &a).unwrap(), "already held");
        assert!(w.append(0, 8, &a).unwrap());
        w.sync().unwrap();
        assert_eq!(
            entries(&path).iter().map(|e| e.offset).collect::<Vec<_>>(),
            vec![7, 8]
        );
        // A file begun by a crash before its owner line was whole: begun anew.
        let torn = path_of(&d, 20_261_122);
        std::fs::write(&torn, &header_bytes(&owner())[..20]).unwrap();
        assert_eq!(header(&torn).unwrap(), Header::Missing);
        let tomorrow = share(1, 11, 3, ShareStatus::Accepted, 2.0, T0 + 86_400_000);
        assert!(w.append(0, 9, &tomorrow).unwrap());
        w.sync().unwrap();
        assert_eq!(header(&torn).unwrap(), Header::Owned(owner()));
        assert_eq!(entries(&torn).len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
