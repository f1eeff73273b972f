//! A small load client for the lifecycle tests: threads sending `GET /` through the router, some
//! over one keep-alive connection each (reconnecting only after a failure or when the server
//! closes it), some over a new connection per request. Every request is counted, and every
//! failure is kept with what went wrong and when, so a test can assert there were none, or count
//! the ones of a known window.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The pause between one thread's requests.
const PACE: Duration = Duration::from_millis(2);

/// One failed request: when (since the load started), over which kind of connection, and why.
#[derive(Debug, Clone)]
pub struct Failure {
    pub at: Duration,
    pub keep_alive: bool,
    pub what: String,
}

/// What the load saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub ok: u64,
    pub failures: Vec<Failure>,
    /// The `x-lane-served-by` values of successful replies, with how many each.
    pub served_by: std::collections::BTreeMap<String, u64>,
}

impl Tally {
    pub fn total(&self) -> u64 {
        self.ok + self.failures.len() as u64
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    threads: Vec<JoinHandle<()>>,
    pub started: Instant,
}

impl Load {
    /// Starts `keep_alive` keep-alive threads and `fresh` new-connection threads sending
    /// `GET /` with `Host: host` and the extra `headers` to `router`.
    pub fn start(
        router: SocketAddr,
        host: &str,
        headers: &[(&str, &str)],
        keep_alive: usize,
        fresh: usize,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let started = Instant::now();
        let mut request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n");
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        let threads = (0..keep_alive + fresh)
            .map(|i| {
                let ka = i < keep_alive;
                let req = format!(
                    "{request}{}\r\n",
                    if ka { "" } else { "Connection: close\r\n" }
                );
                let (stop, tally) = (stop.clone(), tally.clone());
                std::thread::spawn(move || client(router, req, ka, started, &stop, &tally))
            })
            .collect();
        Load {
            stop,
            tally,
            threads,
            started,
        }
    }

    /// What the load saw so far.
    pub fn tally(&self) -> Tally {
        self.tally.lock().unwrap().clone()
    }

    /// Stops the threads and returns the tally.
    pub fn stop(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("a load thread panicked");
        }
        self.tally.lock().unwrap().clone()
    }
}

fn client(
    router: SocketAddr,
    req: String,
    keep_alive: bool,
    started: Instant,
    stop: &AtomicBool,
    tally: &Mutex<Tally>,
) {
    let mut conn: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::SeqCst) {
        let reused = conn.is_some();
        let result = (|| -> Result<(u16, Vec<String>, bool), String> {
            if conn.is_none() {
                let s = TcpStream::connect_timeout(&router, Duration::from_secs(5))
                    .map_err(|e| format!("connect: {e}"))?;
                s.set_read_timeout(Some(Duration::from_secs(20))).ok();
                s.set_nodelay(true).ok();
                conn = Some(BufReader::new(s));
            }
            let c = conn.as_mut().expect("connected above");
            c.get_mut()
                .write_all(req.as_bytes())
                .map_err(|e| format!("write: {e}"))?;
            read_reply(c)
        })();
        match result {
            Ok((200, served, close)) => {
                let mut t = tally.lock().unwrap();
                t.ok += 1;
                *t.served_by.entry(served.join(",")).or_default() += 1;
                if close || !keep_alive {
                    conn = None;
                }
                // Paced, so the load leaves the machine's cores to the agent and other tests.
                std::thread::sleep(PACE);
            }
            Ok((status, served, _)) => {
                conn = None;
                fail(
                    tally,
                    started,
                    keep_alive,
                    format!("status {status} {served:?}"),
                );
            }
            Err(e) => {
                conn = None;
                let e = if reused {
                    format!("{e} (on a reused connection)")
                } else {
                    e
                };
                fail(tally, started, keep_alive, e);
                // Refused connections fail at once: don't spin.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

fn fail(tally: &Mutex<Tally>, started: Instant, keep_alive: bool, what: String) {
    tally.lock().unwrap().failures.push(Failure {
        at: started.elapsed(),
        keep_alive,
        what,
    });
}

/// Reads one response: its status, its `x-lane-served-by` values, and whether the server closes
/// the connection after it.
fn read_reply(c: &mut BufReader<TcpStream>) -> Result<(u16, Vec<String>, bool), String> {
    let mut line = String::new();
    let n = c.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("closed before the status line".into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not a status line: {line:?}"))?;
    let (mut length, mut chunked, mut close, mut served) = (None, false, false, Vec::new());
    loop {
        line.clear();
        c.read_line(&mut line)
            .map_err(|e| format!("read headers: {e}"))?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((k, v)) = l.split_once(':') else {
            return Err(format!("bad header line {l:?}"));
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "content-length" => length = v.parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            "connection" => close = v.eq_ignore_ascii_case("close"),
            "x-lane-served-by" => served.extend(v.split(',').map(|s| s.trim().to_owned())),
            _ => {}
        }
    }
    if chunked {
        loop {
            line.clear();
            c.read_line(&mut line)
                .map_err(|e| format!("read chunk: {e}"))?;
            let size = usize::from_str_radix(line.trim(), 16)
                .map_err(|_| format!("bad chunk size {line:?}"))?;
            let mut buf = vec![0; size + 2];
            c.read_exact(&mut buf)
                .map_err(|e| format!("read chunk body: {e}"))?;
            if size == 0 {
                break;
            }
        }
    } else if let Some(n) = length {
        let mut buf = vec![0; n];
        c.read_exact(&mut buf)
            .map_err(|e| format!("read body: {e}"))?;
    } else {
        let mut rest = Vec::new();
        c.read_to_end(&mut rest)
            .map_err(|e| format!("read body: {e}"))?;
        close = true;
    }
    Ok((status, served, close))
}
