//! A loopback TCP proxy that delays every byte by a fixed one-way latency in each
//! direction, pipelined: a chunk read at `t` is written at `t + latency`, whatever
//! else is in flight (a slow link, not a slow server), or that accepts connections
//! and never forwards anything (a hung member).

use std::{
    io::{self, Read, Write},
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread,
    time::{Duration, Instant},
};

/// A running proxy; stops accepting when dropped (open connections end with their
/// peers).
#[derive(Debug)]
pub struct LatencyProxy {
    port: u16,
    closed: Arc<AtomicBool>,
}

impl LatencyProxy {
    /// Forwards a new loopback port to `target`, adding `one_way` in each direction;
    /// `None` forwards nothing at all (connections are accepted and left hanging).
    ///
    /// # Errors
    ///
    /// When no port can be bound or `target` does not resolve.
    pub fn start(target: &str, one_way: Option<Duration>) -> io::Result<LatencyProxy> {
        let target = target.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{target} does not resolve"),
            )
        })?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let closed = Arc::new(AtomicBool::new(false));
        let stop = closed.clone();
        thread::Builder::new()
            .name(format!("latency-proxy-{port}"))
            .spawn(move || accept_loop(listener, target, one_way, &stop))?;
        Ok(LatencyProxy { port, closed })
    }

    /// The loopback port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        // Wake the blocking accept so its thread sees `closed`.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
    }
}

fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    one_way: Option<Duration>,
    closed: &AtomicBool,
) {
    let mut hung = Vec::new();
    for inbound in listener.incoming() {
        if closed.load(Ordering::SeqCst) {
            return;
        }
        let Ok(inbound) = inbound else { continue };
        let Some(delay) = one_way else {
            hung.push(inbound); // accepted, never answered
            continue;
        };
        let Ok(outbound) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
            let _ = inbound.shutdown(Shutdown::Both);
            continue;
        };
        let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
        for (from, to) in [(&inbound, &outbound), (&outbound, &inbound)] {
            let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                continue;
            };
            let (tx, rx) = mpsc::channel();
            let _ = thread::Builder::new()
                .name("latency-read".into())
                .spawn(move || read_side(from, &tx));
            let _ = thread::Builder::new()
                .name("latency-write".into())
                .spawn(move || write_side(to, &rx, delay));
        }
    }
}

fn read_side(mut from: TcpStream, tx: &mpsc::Sender<(Instant, Vec<u8>)>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Read);
}

fn write_side(mut to: TcpStream, rx: &mpsc::Receiver<(Instant, Vec<u8>)>, delay: Duration) {
    while let Ok((read_at, chunk)) = rx.recv() {
        let due = read_at + delay;
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        if to.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
