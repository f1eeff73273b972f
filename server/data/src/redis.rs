//! A lane's Redis database: an index from the binding's pool, claimed on the server itself.
//!
//! A claim is the key [`OWNER_KEY`] in the database, holding the lane id, set by one Lua script
//! that runs atomically on the server: it takes the database only when it is empty, so two lanes
//! asking at the same instant (from one machine or several) can never get the same index, and a
//! database holding data lane did not put there is never handed out. The lane's document records
//! the index too (`DataBinding::target`). Releasing checks the claim before flushing.
//!
//! The client is a small RESP2 client over TCP: the commands used are `AUTH`, `SELECT`, `EVAL`,
//! `GET`, `DBSIZE`, `FLUSHDB`, `SCAN`, `DEL`, `MEMORY USAGE` and `PING`.

use std::time::Duration;

use lane_core::LaneId;
use lane_core::data::{Address, redact};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::error::{DataError, Result};

const WHAT: &str = "Redis";
/// The key that records which lane holds a database.
pub const OWNER_KEY: &str = "__lane_owner__";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Claims the selected database for ARGV[1] when it is free and empty; answers its owner.
pub(crate) const CLAIM: &str = "local owner = redis.call('GET', KEYS[1]) \
    if owner then return owner end \
    if redis.call('DBSIZE') ~= 0 then return false end \
    redis.call('SET', KEYS[1], ARGV[1]) \
    return ARGV[1]";

/// A reply in RESP2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// One connection to a Redis server.
pub struct Redis {
    stream: BufReader<TcpStream>,
    address: String,
}

/// A database of a pool and who holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slot {
    pub index: u32,
    /// The lane holding it; `None`: free (or holding data lane does not own, see `keys`).
    pub owner: Option<String>,
    pub keys: u64,
}

impl Redis {
    /// Connects to `url` (`redis://[user:password@]host[:port][/index]`) and authenticates.
    pub async fn connect(url: &str) -> Result<Redis> {
        let address = redact(url);
        let addr = Address::parse(url).map_err(DataError::Invalid)?;
        if addr.scheme != "redis" {
            return Err(DataError::Invalid(format!(
                "`{address}`: only `redis://` (no TLS) is supported"
            )));
        }
        let hostport = if addr.authority.contains(':') {
            addr.authority.clone()
        } else {
            format!("{}:6379", addr.authority)
        };
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&hostport)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return Err(DataError::Unreachable {
                        what: WHAT,
                        address,
                        reason: e.to_string(),
                    });
                }
                Err(_) => {
                    return Err(DataError::Unreachable {
                        what: WHAT,
                        address,
                        reason: format!("no answer in {}s", CONNECT_TIMEOUT.as_secs()),
                    });
                }
            };
        let mut redis = Redis {
            stream: BufReader::new(stream),
            address,
        };
        if let Some(userinfo) = &addr.userinfo {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, p),
                None => ("", userinfo.as_str()),
            };
            let reply = if user.is_empty() {
                redis.raw(&[b"AUTH", password.as_bytes()]).await?
            } else {
                redis
                    .raw(&[b"AUTH", user.as_bytes(), password.as_bytes()])
                    .await?
            };
            if let Reply::Error(e) = reply {
                return Err(DataError::Auth {
                    what: WHAT,
                    address: redis.address.clone(),
                    reason: e,
                });
            }
        }
        match redis.raw(&[b"PING"]).await? {
            Reply::Error(e) if e.starts_with("NOAUTH") || e.starts_with("WRONGPASS") => {
                Err(DataError::Auth {
                    what: WHAT,
                    address: redis.address.clone(),
                    reason: e,
                })
            }
            Reply::Error(e) => Err(redis.server(e)),
            _ => Ok(redis),
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub(crate) fn server(&self, message: String) -> DataError {
        DataError::Server {
            what: WHAT,
            address: self.address.clone(),
            message,
        }
    }

    /// Sends one command and reads its reply (an error reply is a `Reply::Error`).
    pub async fn raw(&mut self, args: &[&[u8]]) -> Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        let io = |e: std::io::Error, address: &str| DataError::Unreachable {
            what: WHAT,
            address: address.to_owned(),
            reason: e.to_string(),
        };
        self.stream
            .get_mut()
            .write_all(&out)
            .await
            .map_err(|e| io(e, &self.address))?;
        match tokio::time::timeout(REPLY_TIMEOUT, read_reply(&mut self.stream)).await {
            Ok(r) => r.map_err(|e| io(e, &self.address)),
            Err(_) => Err(DataError::Unreachable {
                what: WHAT,
                address: self.address.clone(),
                reason: format!("no reply in {}s", REPLY_TIMEOUT.as_secs()),
            }),
        }
    }

    /// Sends commands in one write and reads their replies (error replies stay `Reply::Error`).
    pub async fn pipeline(&mut self, commands: &[Vec<&[u8]>]) -> Result<Vec<Reply>> {
        let mut out = Vec::new();
        for args in commands {
            out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                out.extend_from_slice(a);
                out.extend_from_slice(b"\r\n");
            }
        }
        let io = |e: std::io::Error, address: &str| DataError::Unreachable {
            what: WHAT,
            address: address.to_owned(),
            reason: e.to_string(),
        };
        self.stream
            .get_mut()
            .write_all(&out)
            .await
            .map_err(|e| io(e, &self.address))?;
        let mut replies = Vec::with_capacity(commands.len());
        for _ in commands {
            match tokio::time::timeout(REPLY_TIMEOUT, read_reply(&mut self.stream)).await {
                Ok(r) => replies.push(r.map_err(|e| io(e, &self.address))?),
                Err(_) => {
                    return Err(DataError::Unreachable {
                        what: WHAT,
                        address: self.address.clone(),
                        reason: format!("no reply in {}s", REPLY_TIMEOUT.as_secs()),
                    });
                }
            }
        }
        Ok(replies)
    }

    /// Sends one command; an error reply becomes an error.
    pub async fn cmd(&mut self, args: &[&[u8]]) -> Result<Reply> {
        match self.raw(args).await? {
            Reply::Error(e) => Err(self.server(e)),
            r => Ok(r),
        }
    }

    pub(crate) async fn select(&mut self, index: u32) -> Result<()> {
        match self.raw(&[b"SELECT", index.to_string().as_bytes()]).await? {
            Reply::Error(e) => Err(DataError::Invalid(format!(
                "{}: cannot select database {index}: {e} (is the pool larger than the server's \
                 `databases` setting?)",
                self.address
            ))),
            _ => Ok(()),
        }
    }

    pub(crate) async fn owner(&mut self) -> Result<Option<String>> {
        match self.cmd(&[b"GET", OWNER_KEY.as_bytes()]).await? {
            Reply::Bulk(Some(b)) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            _ => Ok(None),
        }
    }

    /// The database index lane `lane` holds in `first..=last`, claiming a free one when it holds
    /// none. `baseline` (the baseline's own index) is never given out.
    pub async fn allocate(
        &mut self,
        lane: &LaneId,
        first: u32,
        last: u32,
        baseline: u32,
    ) -> Result<u32> {
        Ok(self.claim(lane, first, last, baseline).await?.0)
    }

    /// Like [`Redis::allocate`], also saying whether the database was claimed just now (`true`)
    /// or was the lane's already (`false`).
    pub async fn claim(
        &mut self,
        lane: &LaneId,
        first: u32,
        last: u32,
        baseline: u32,
    ) -> Result<(u32, bool)> {
        if first > last {
            return Err(DataError::Invalid(format!(
                "the pool {first}..={last} is empty"
            )));
        }
        let pool = || (first..=last).filter(move |i| *i != baseline);
        // Already holding one (a second deploy into the lane)?
        for index in pool() {
            self.select(index).await?;
            if self.owner().await?.as_deref() == Some(lane.as_str()) {
                return Ok((index, false));
            }
        }
        for index in pool() {
            self.select(index).await?;
            let reply = self
                .cmd(&[
                    b"EVAL",
                    CLAIM.as_bytes(),
                    b"1",
                    OWNER_KEY.as_bytes(),
                    lane.as_str().as_bytes(),
                ])
                .await?;
            if let Reply::Bulk(Some(owner)) = reply
                && owner == lane.as_str().as_bytes()
            {
                return Ok((index, true));
            }
        }
        Err(DataError::PoolFull {
            address: self.address.clone(),
            first,
            last,
        })
    }

    /// Empties database `index` and gives it back, when lane `lane` holds it; refuses otherwise.
    /// `Ok(false)`: it was not held by anyone (nothing to do).
    pub async fn release(&mut self, lane: &LaneId, index: u32) -> Result<bool> {
        self.select(index).await?;
        match self.owner().await? {
            Some(owner) if owner == lane.as_str() => {
                self.cmd(&[b"FLUSHDB"]).await?;
                Ok(true)
            }
            Some(owner) => Err(DataError::Guard(format!(
                "Redis database {index} on {} belongs to lane `{owner}`, not `{lane}`",
                self.address
            ))),
            None => {
                let keys = self.dbsize().await?;
                if keys == 0 {
                    Ok(false)
                } else {
                    Err(DataError::Guard(format!(
                        "Redis database {index} on {} holds {keys} keys and no lane's claim; \
                         it is not lane `{lane}`'s to flush",
                        self.address
                    )))
                }
            }
        }
    }

    pub(crate) async fn dbsize(&mut self) -> Result<u64> {
        match self.cmd(&[b"DBSIZE"]).await? {
            Reply::Int(n) => Ok(n.max(0) as u64),
            other => Err(self.server(format!("DBSIZE answered {other:?}"))),
        }
    }

    /// Who holds each database of `first..=last`, and its key count (the claim key excluded).
    pub async fn slots(&mut self, first: u32, last: u32) -> Result<Vec<Slot>> {
        let mut out = Vec::new();
        for index in first..=last {
            self.select(index).await?;
            let owner = self.owner().await?;
            let keys = self.dbsize().await?;
            let keys = keys - u64::from(owner.is_some() && keys > 0);
            out.push(Slot { index, owner, keys });
        }
        Ok(out)
    }

    /// One step of a `SCAN` over the keys starting with `prefix` (the pattern is the escaped
    /// prefix; the keys answered are checked to start with it): the next cursor and the keys.
    async fn scan_prefix(
        &mut self,
        cursor: &[u8],
        pattern: &str,
        prefix: &str,
        count: &[u8],
    ) -> Result<(Vec<u8>, Vec<Vec<u8>>)> {
        let reply = self
            .cmd(&[
                b"SCAN",
                cursor,
                b"MATCH",
                pattern.as_bytes(),
                b"COUNT",
                count,
            ])
            .await?;
        let Reply::Array(Some(parts)) = reply else {
            return Err(self.server("SCAN answered no array".into()));
        };
        let (Some(Reply::Bulk(Some(next))), Some(Reply::Array(Some(keys)))) =
            (parts.first(), parts.get(1))
        else {
            return Err(self.server("SCAN answered an unexpected shape".into()));
        };
        let keys = keys
            .iter()
            .filter_map(|k| match k {
                Reply::Bulk(Some(b)) if b.starts_with(prefix.as_bytes()) => Some(b.clone()),
                _ => None,
            })
            .collect();
        Ok((next.clone(), keys))
    }

    /// Deletes every key starting with `prefix` in database `index` (prefix mode's teardown).
    /// Returns how many were deleted.
    pub async fn delete_prefix(&mut self, index: u32, prefix: &str) -> Result<u64> {
        if prefix.is_empty() || !prefix.starts_with("lane:") {
            return Err(DataError::Guard(format!(
                "`{prefix}` is not a lane's key prefix"
            )));
        }
        self.select(index).await?;
        let pattern = format!("{}*", glob_escape(prefix));
        let mut cursor = b"0".to_vec();
        let mut deleted = 0;
        loop {
            let (next, keys) = self.scan_prefix(&cursor, &pattern, prefix, b"500").await?;
            if !keys.is_empty() {
                let mut args: Vec<&[u8]> = vec![b"DEL"];
                args.extend(keys.iter().map(Vec::as_slice));
                if let Reply::Int(n) = self.cmd(&args).await? {
                    deleted += n.max(0) as u64;
                }
            }
            if next.as_slice() == b"0" {
                break;
            }
            cursor = next;
        }
        Ok(deleted)
    }

    /// How many keys of database `index` start with `prefix` (counted exactly, by `SCAN`), and
    /// about how many bytes they take: `MEMORY USAGE` of at most `sample` of them (the first the
    /// scan answers), scaled to the count. The bytes are an estimate twice over: `MEMORY USAGE`
    /// itself samples the elements of large values. Reads only.
    pub async fn prefix_usage(
        &mut self,
        index: u32,
        prefix: &str,
        sample: u64,
    ) -> Result<PrefixUsage> {
        if prefix.is_empty() {
            return Err(DataError::Invalid("an empty key prefix".into()));
        }
        self.select(index).await?;
        let pattern = format!("{}*", glob_escape(prefix));
        let mut cursor = b"0".to_vec();
        let mut usage = PrefixUsage::default();
        let mut measured: u64 = 0;
        loop {
            let (next, keys) = self.scan_prefix(&cursor, &pattern, prefix, b"1000").await?;
            usage.keys += keys.len() as u64;
            let room = sample.saturating_sub(usage.sampled) as usize;
            let cmds: Vec<Vec<&[u8]>> = keys
                .iter()
                .take(room)
                .map(|k| vec![&b"MEMORY"[..], b"USAGE", k])
                .collect();
            if !cmds.is_empty() {
                for reply in self.pipeline(&cmds).await? {
                    match reply {
                        Reply::Int(n) => {
                            measured += n.max(0) as u64;
                            usage.sampled += 1;
                        }
                        // Gone since the scan (expired or deleted): not measured.
                        Reply::Bulk(None) => {}
                        Reply::Error(e) => {
                            return Err(self.server(format!("MEMORY USAGE: {e}")));
                        }
                        other => {
                            return Err(self.server(format!("MEMORY USAGE answered {other:?}")));
                        }
                    }
                }
            }
            if next.as_slice() == b"0" {
                break;
            }
            cursor = next;
        }
        usage.bytes = match usage.sampled {
            0 => 0,
            n => (u128::from(measured) * u128::from(usage.keys) / u128::from(n))
                .try_into()
                .unwrap_or(u64::MAX),
        };
        Ok(usage)
    }
}

/// The keys under a prefix and an estimate of their size ([`Redis::prefix_usage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PrefixUsage {
    /// The keys starting with the prefix (exact).
    pub keys: u64,
    /// About how many bytes they take in the server's memory (estimated from `sampled` keys).
    pub bytes: u64,
    /// How many keys were measured with `MEMORY USAGE`.
    pub sampled: u64,
}

/// Escapes Redis glob characters.
pub(crate) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

async fn read_line(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn bad(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

fn read_reply(
    r: &mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Reply>> + Send + '_>> {
    Box::pin(async move {
        let line = read_line(r).await?;
        let (kind, rest) = line.split_at(line.len().min(1));
        let int = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| bad(format!("not a number in a reply: {s:?}")))
        };
        match kind {
            "+" => Ok(Reply::Status(rest.to_owned())),
            "-" => Ok(Reply::Error(rest.to_owned())),
            ":" => Ok(Reply::Int(int(rest)?)),
            "$" => {
                let n = int(rest)?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut buf = vec![0; n as usize + 2];
                r.read_exact(&mut buf).await?;
                buf.truncate(n as usize);
                Ok(Reply::Bulk(Some(buf)))
            }
            "*" => {
                let n = int(rest)?;
                if n < 0 {
                    return Ok(Reply::Array(None));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(read_reply(r).await?);
                }
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(bad(format!("not a RESP reply: {line:?}"))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_escaped() {
        assert_eq!(glob_escape("lane:a*b?:"), "lane:a\\*b\\?:");
    }
}
