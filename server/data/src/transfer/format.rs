//! The lane data file (`.lanedata`), format version 1.
//!
//! ```text
//! file   = magic version frame* end
//! magic  = "LANEDATA"                      8 bytes
//! version= u16 big-endian                  1
//! frame  = tag:u8 len:u32be payload[len] crc:u32be   crc = CRC-32 (IEEE) of tag, len and payload
//! ```
//!
//! The first frame is the [`Manifest`] (JSON). Then, per binding, a [`Section`] frame (JSON), the
//! binding's frames (tags of its kind), and a [`SectionEnd`] frame (JSON, with counts). The last
//! frame is [`End`] (JSON): the number of frames before it and the CRC-32 of every byte before
//! it. A file without its end frame is truncated; any frame whose CRC does not match is corrupt;
//! nothing is applied from a file until its end frame has been read and checked (imports stage
//! everything and swap only then).
//!
//! Tags: 1 manifest, 2 section, 3 section end, 4 end; 10–19 MySQL (10 table, 11 rows, 12 view,
//! 13 trigger); 20–29 Redis (20 keys, in both modes: names without the lane's prefix in key-prefix
//! mode); 40–49 Apollo (40 namespace: JSON `{namespace, format?, items: [{key, value, comment}]}`);
//! 30–39 Kafka: 30 topic (JSON [`KafkaTopic`]: the baseline topic, the lane topic's partition
//! count and configs, the offsets exported), 31 records (one partition's records of the topic
//! opened last, in offset order):
//!
//! ```text
//! records = partition:u32 count:u32 record*
//! record  = timestamp:i64 (ms) key value headers:u32 (name:bytes value)*
//! key, value, header value = len:u32 bytes[len] | 0xFFFFFFFF (null)     name = len:u32 bytes[len]
//! ```

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{DataError, Result};

pub const MAGIC: &[u8; 8] = b"LANEDATA";
pub const VERSION: u16 = 1;
/// The largest frame a reader accepts (a writer keeps frames far below).
pub const MAX_FRAME: u32 = 256 << 20;

pub const TAG_MANIFEST: u8 = 1;
pub const TAG_SECTION: u8 = 2;
pub const TAG_SECTION_END: u8 = 3;
pub const TAG_END: u8 = 4;
pub const TAG_MYSQL_TABLE: u8 = 10;
pub const TAG_MYSQL_ROWS: u8 = 11;
pub const TAG_MYSQL_VIEW: u8 = 12;
pub const TAG_MYSQL_TRIGGER: u8 = 13;
pub const TAG_REDIS_KEYS: u8 = 20;
pub const TAG_KAFKA_TOPIC: u8 = 30;
pub const TAG_KAFKA_RECORDS: u8 = 31;
pub const TAG_APOLLO_NAMESPACE: u8 = 40;

/// Kafka: a topic of the binding, before its records frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaTopic {
    /// The baseline topic (the lane's is `<topic>.lane-<id>` in whichever lane imports it).
    pub topic: String,
    pub partitions: i32,
    /// The topic-level configs of the exported lane topic.
    pub configs: Vec<(String, String)>,
    /// Per partition, the first offset exported and the end offset (high watermark) taken when
    /// the export started.
    pub start: Vec<i64>,
    pub end: Vec<i64>,
}

/// The first frame: what the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`VERSION`] (repeated here for tools reading the JSON).
    pub format: u16,
    /// The lane the data was exported from.
    pub lane: String,
    /// Unix seconds.
    pub created: u64,
    /// The `lane` version that wrote it.
    pub writer: String,
    pub bindings: Vec<BindingEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingEntry {
    pub name: String,
    pub kind: String,
}

/// Opens a binding's frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    pub binding: String,
    pub kind: String,
    /// MySQL: the exported database (views and triggers name it; an import points them at the
    /// target database). Redis: the database index, or the lane's key prefix. Apollo: the
    /// cluster.
    pub source: String,
    /// MySQL: the database's character set and collation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charset: Option<(String, String)>,
}

/// Closes a binding's frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionEnd {
    pub binding: String,
    /// MySQL: rows; Redis: keys.
    pub items: u64,
    /// MySQL: tables + views + triggers; Redis: 0.
    pub objects: u64,
}

/// The last frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// Frames before this one.
    pub frames: u64,
    /// CRC-32 of every byte of the file before this frame.
    pub crc: u32,
}

/// MySQL: a base table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    /// `SHOW CREATE TABLE`, unqualified.
    pub ddl: String,
    /// The columns the rows frames hold, in order (generated columns left out).
    pub columns: Vec<String>,
}

/// MySQL: a view or trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    pub name: String,
    /// Without `DEFINER`; references qualified with the section's `source` database.
    pub ddl: String,
    /// The trigger's sql_mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_mode: Option<String>,
}

/// A value of a row: its text-protocol bytes, or NULL.
pub type Value = Option<Vec<u8>>;

const NULL: u32 = u32::MAX;

/// Encodes rows (each `width` values): `count:u32` then per value `len:u32` (NULL: 0xFFFFFFFF) and
/// the bytes.
pub fn encode_rows(rows: &[Vec<Value>]) -> Vec<u8> {
    let size: usize = rows
        .iter()
        .flatten()
        .map(|v| 4 + v.as_ref().map_or(0, Vec::len))
        .sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(rows.len() as u32).to_be_bytes());
    for row in rows {
        for v in row {
            match v {
                None => out.extend_from_slice(&NULL.to_be_bytes()),
                Some(b) => {
                    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
                    out.extend_from_slice(b);
                }
            }
        }
    }
    out
}

/// Builds a rows payload (the same bytes as [`encode_rows`]) one row at a time.
pub struct RowsEncoder {
    buf: Vec<u8>,
    rows: u32,
}

impl Default for RowsEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl RowsEncoder {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(1 << 20);
        buf.extend_from_slice(&[0; 4]);
        RowsEncoder { buf, rows: 0 }
    }
    pub fn value(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.buf.extend_from_slice(&NULL.to_be_bytes()),
            Some(b) => {
                self.buf.extend_from_slice(&(b.len() as u32).to_be_bytes());
                self.buf.extend_from_slice(b);
            }
        }
    }
    /// Counts a row whose values were added.
    pub fn end_row(&mut self) {
        self.rows += 1;
    }
    pub fn rows(&self) -> u32 {
        self.rows
    }
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }
    /// The payload and its row count; the encoder starts over.
    pub fn take(&mut self) -> (Vec<u8>, u32) {
        let RowsEncoder { mut buf, rows } = std::mem::take(self);
        buf[..4].copy_from_slice(&rows.to_be_bytes());
        (buf, rows)
    }
}

/// A cursor over a frame's payload.
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return Err(DataError::Format(
                "a frame's payload ends in the middle of a value".into(),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn value(&mut self) -> Result<Value> {
        let n = self.u32()?;
        if n == NULL {
            return Ok(None);
        }
        Ok(Some(self.take(n as usize)?.to_vec()))
    }
    pub fn done(&self) -> Result<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DataError::Format(format!(
                "a frame holds {} bytes more than its values",
                self.buf.len() - self.pos
            )))
        }
    }
}

/// Decodes rows of `width` values.
pub fn decode_rows(payload: &[u8], width: usize) -> Result<Vec<Vec<Value>>> {
    let mut c = Cursor::new(payload);
    let n = c.u32()? as usize;
    if width == 0 && n > 0 {
        return Err(DataError::Format("rows for a table without columns".into()));
    }
    let mut rows = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let mut row = Vec::with_capacity(width);
        for _ in 0..width {
            row.push(c.value()?);
        }
        rows.push(row);
    }
    c.done()?;
    Ok(rows)
}

/// A Redis key: name, time to live in milliseconds (`-1`: none), `DUMP` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub name: Vec<u8>,
    pub pttl: i64,
    pub payload: Vec<u8>,
}

pub fn encode_keys(keys: &[Key]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
    for k in keys {
        out.extend_from_slice(&(k.name.len() as u32).to_be_bytes());
        out.extend_from_slice(&k.name);
        out.extend_from_slice(&k.pttl.to_be_bytes());
        out.extend_from_slice(&(k.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&k.payload);
    }
    out
}

pub fn decode_keys(payload: &[u8]) -> Result<Vec<Key>> {
    let mut c = Cursor::new(payload);
    let n = c.u32()? as usize;
    let mut keys = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let name = c.bytes()?.to_vec();
        let pttl = c.i64()?;
        let payload = c.bytes()?.to_vec();
        keys.push(Key {
            name,
            pttl,
            payload,
        });
    }
    c.done()?;
    Ok(keys)
}

/// Writes a lane data file.
pub struct Writer<W> {
    out: W,
    crc: crc32fast::Hasher,
    frames: u64,
    bytes: u64,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    /// Writes the magic, the version and the manifest.
    pub async fn new(out: W, manifest: &Manifest) -> Result<Self> {
        let mut w = Writer {
            out,
            crc: crc32fast::Hasher::new(),
            frames: 0,
            bytes: 0,
        };
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&VERSION.to_be_bytes());
        w.put(&head).await?;
        w.json(TAG_MANIFEST, manifest).await?;
        Ok(w)
    }

    async fn put(&mut self, b: &[u8]) -> Result<()> {
        self.crc.update(b);
        self.bytes += b.len() as u64;
        self.out.write_all(b).await.map_err(write_error)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.bytes
    }

    pub async fn frame(&mut self, tag: u8, payload: &[u8]) -> Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= MAX_FRAME)
            .ok_or_else(|| {
                DataError::Invalid(format!(
                    "a frame of {} bytes is larger than the format allows ({MAX_FRAME})",
                    payload.len()
                ))
            })?;
        let mut head = [0u8; 5];
        head[0] = tag;
        head[1..].copy_from_slice(&len.to_be_bytes());
        let mut c = crc32fast::Hasher::new();
        c.update(&head);
        c.update(payload);
        let crc = c.finalize();
        self.put(&head).await?;
        self.put(payload).await?;
        self.put(&crc.to_be_bytes()).await?;
        self.frames += 1;
        Ok(())
    }

    pub async fn json<T: Serialize>(&mut self, tag: u8, value: &T) -> Result<()> {
        let body = serde_json::to_vec(value).expect("serialisable");
        self.frame(tag, &body).await
    }

    /// Writes the end frame and flushes; returns the output and the bytes written.
    pub async fn finish(mut self) -> Result<(W, u64)> {
        let end = End {
            frames: self.frames,
            crc: self.crc.clone().finalize(),
        };
        self.json(TAG_END, &end).await?;
        self.out.flush().await.map_err(write_error)?;
        Ok((self.out, self.bytes))
    }
}

fn write_error(e: std::io::Error) -> DataError {
    DataError::Io(format!("cannot write the data file: {e}"))
}

/// One frame read.
#[derive(Debug)]
pub struct Frame {
    pub tag: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| DataError::Format(format!("the {what} frame is not valid: {e}")))
    }
}

/// Reads a lane data file, checking every frame.
pub struct Reader<R> {
    input: R,
    crc: crc32fast::Hasher,
    frames: u64,
    offset: u64,
    ended: bool,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Checks the magic and version and reads the manifest.
    pub async fn new(input: R) -> Result<(Self, Manifest)> {
        let mut r = Reader {
            input,
            crc: crc32fast::Hasher::new(),
            frames: 0,
            offset: 0,
            ended: false,
        };
        let mut head = [0u8; 10];
        let n = r.fill(&mut head).await?;
        if n < 8 || &head[..8] != MAGIC {
            return Err(DataError::Format(
                "not a lane data file (it does not start with `LANEDATA`)".into(),
            ));
        }
        if n < 10 {
            return Err(DataError::Format(
                "the file is truncated: it ends inside its header".into(),
            ));
        }
        let version = u16::from_be_bytes([head[8], head[9]]);
        if version != VERSION {
            return Err(DataError::Format(format!(
                "the file is in lane data format {version}; this lane reads format {VERSION}{}",
                if version > VERSION {
                    " (it was written by a newer lane: upgrade lane to import it)"
                } else {
                    ""
                }
            )));
        }
        r.crc.update(&head);
        r.offset = 10;
        let first = r
            .next()
            .await?
            .ok_or_else(|| DataError::Format("the file holds no manifest".into()))?;
        if first.tag != TAG_MANIFEST {
            return Err(DataError::Format(format!(
                "the first frame is tag {}, not the manifest",
                first.tag
            )));
        }
        let manifest: Manifest = first.json("manifest")?;
        Ok((r, manifest))
    }

    /// Reads as much of `buf` as the input holds.
    async fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            let got = self
                .input
                .read(&mut buf[n..])
                .await
                .map_err(|e| DataError::Io(format!("cannot read the data file: {e}")))?;
            if got == 0 {
                break;
            }
            n += got;
        }
        Ok(n)
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next frame; `None` after the end frame has been read and checked.
    pub async fn next(&mut self) -> Result<Option<Frame>> {
        if self.ended {
            return Ok(None);
        }
        let at = self.offset;
        let truncated = || {
            DataError::Format(format!(
                "the file is truncated: it ends inside a frame at byte {at} (no end frame)"
            ))
        };
        let mut head = [0u8; 5];
        let n = self.fill(&mut head).await?;
        if n == 0 {
            return Err(DataError::Format(format!(
                "the file is truncated: it ends at byte {at} without its end frame"
            )));
        }
        if n < 5 {
            return Err(truncated());
        }
        let tag = head[0];
        let len = u32::from_be_bytes(head[1..].try_into().expect("4"));
        if len > MAX_FRAME {
            return Err(DataError::Format(format!(
                "the file is corrupt: a frame at byte {at} claims {len} bytes"
            )));
        }
        let mut payload = vec![0u8; len as usize];
        if self.fill(&mut payload).await? < payload.len() {
            return Err(truncated());
        }
        let mut crc = [0u8; 4];
        if self.fill(&mut crc).await? < 4 {
            return Err(truncated());
        }
        let mut c = crc32fast::Hasher::new();
        c.update(&head);
        c.update(&payload);
        if c.finalize() != u32::from_be_bytes(crc) {
            return Err(DataError::Format(format!(
                "the file is corrupt: the checksum of the frame at byte {at} does not match"
            )));
        }
        let before = self.crc.clone().finalize();
        self.crc.update(&head);
        self.crc.update(&payload);
        self.crc.update(&crc);
        self.offset += 9 + u64::from(len);
        let frame = Frame { tag, payload };
        if tag == TAG_END {
            let end: End = frame.json("end")?;
            if end.frames != self.frames || end.crc != before {
                return Err(DataError::Format(format!(
                    "the file is corrupt: its end frame counts {} frames (crc {:08x}), the file \
                     holds {} (crc {before:08x})",
                    end.frames, end.crc, self.frames
                )));
            }
            let mut extra = [0u8; 1];
            if self.fill(&mut extra).await? != 0 {
                return Err(DataError::Format(
                    "the file is corrupt: bytes follow its end frame".into(),
                ));
            }
            self.ended = true;
            return Ok(None);
        }
        self.frames += 1;
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format: VERSION,
            lane: "a".into(),
            created: 1,
            writer: "t".into(),
            bindings: vec![],
        }
    }

    async fn file() -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), &manifest()).await.unwrap();
        let rows = vec![
            vec![Some(b"1".to_vec()), None],
            vec![Some(vec![]), Some(b"x".to_vec())],
        ];
        w.frame(TAG_MYSQL_ROWS, &encode_rows(&rows)).await.unwrap();
        w.finish().await.unwrap().0
    }

    #[tokio::test]
    async fn round_trip() {
        let bytes = file().await;
        let (mut r, m) = Reader::new(bytes.as_slice()).await.unwrap();
        assert_eq!(m, manifest());
        let f = r.next().await.unwrap().unwrap();
        let rows = decode_rows(&f.payload, 2).unwrap();
        assert_eq!(rows[0], vec![Some(b"1".to_vec()), None]);
        assert_eq!(rows[1], vec![Some(vec![]), Some(b"x".to_vec())]);
        assert!(r.next().await.unwrap().is_none());
        let mut enc = RowsEncoder::new();
        for row in [[Some(&b"1"[..]), None], [Some(&b""[..]), Some(&b"x"[..])]] {
            for v in row {
                enc.value(v);
            }
            enc.end_row();
        }
        let rows = vec![
            vec![Some(b"1".to_vec()), None],
            vec![Some(vec![]), Some(b"x".to_vec())],
        ];
        assert_eq!(enc.take(), (encode_rows(&rows), 2));
        let keys = vec![Key {
            name: b"k".to_vec(),
            pttl: -1,
            payload: vec![0, 1, 2],
        }];
        assert_eq!(decode_keys(&encode_keys(&keys)).unwrap(), keys);
    }

    #[tokio::test]
    async fn every_flipped_byte_and_every_truncation_is_an_error() {
        let bytes = file().await;
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            let r = async {
                let (mut r, _) = Reader::new(b.as_slice()).await?;
                while r.next().await?.is_some() {}
                Ok::<_, DataError>(())
            };
            assert!(r.await.is_err(), "byte {i} flipped");
            let cut = &bytes[..i];
            let r = async {
                let (mut r, _) = Reader::new(cut).await?;
                while r.next().await?.is_some() {}
                Ok::<_, DataError>(())
            };
            let e = r.await.unwrap_err();
            assert!(matches!(e, DataError::Format(_)), "cut at {i}: {e}");
        }
        let e = Reader::new(&b"PK\x03\x04 a zip file"[..])
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a lane data file"), "{e}");
    }
}
