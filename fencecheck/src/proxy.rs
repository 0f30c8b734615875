//! An in-process TCP fault proxy between holders and servers (tc netem is not in these
//! kernels and Toxiproxy is not packaged; the `noxious` crate is a whole server with an
//! HTTP API, more than the three faults here need).
//!
//! Faults: **blackhole** (nothing moves in either direction; bytes wait in the kernel
//! buffers as in a real partition with retransmission, and flow again on heal),
//! **reset** (every open connection is closed with RST), **latency** (each chunk is
//! delayed). **Retarget** points the proxy at another server and resets every open
//! connection, so that clients reconnect there (a failover as clients see it).

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    sync::watch,
    task::{AbortHandle, JoinHandle},
};

/// How the proxy treats traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Forward nothing, in either direction, until healed.
    Blackhole,
    /// Delay each chunk by this much.
    Latency(Duration),
}

/// One proxied endpoint, listening on `127.0.0.1:0`. Dropping it closes everything.
pub struct Proxy {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    mode: watch::Sender<Mode>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("mode", &*self.mode.borrow())
            .finish()
    }
}

impl Proxy {
    /// Starts a proxy to `target`.
    ///
    /// # Errors
    ///
    /// When it cannot bind.
    pub async fn start(target: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, rx) = watch::channel(Mode::Pass);
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let list = conns.clone();
        let target = Arc::new(Mutex::new(target));
        let upstream = target.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let rx = rx.clone();
                let to = *upstream.lock().unwrap_or_else(|e| e.into_inner());
                let Ok(outbound) = TcpStream::connect(to).await else {
                    continue;
                };
                for s in [&inbound, &outbound] {
                    let _ = s.set_nodelay(true);
                    // Zero linger: closing (on reset, or when the task ends) sends RST.
                    let _ = s.set_zero_linger();
                }
                let task = tokio::spawn(pump_both(inbound, outbound, rx)).abort_handle();
                let mut list = list.lock().unwrap_or_else(|e| e.into_inner());
                list.retain(|c| !c.is_finished());
                list.push(task);
            }
        });
        Ok(Proxy {
            addr,
            target,
            mode,
            conns,
            task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the traffic mode.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Points new connections at `target` and closes every open one with RST, so
    /// that no client keeps talking to the old server through this proxy.
    pub fn retarget(&self, target: SocketAddr) {
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = target;
        self.reset();
    }

    /// The server new connections go to.
    pub fn target(&self) -> SocketAddr {
        *self.target.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes every open connection with RST (new ones are accepted).
    pub fn reset(&self) {
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|e| e.into_inner()));
        for c in conns {
            c.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.reset();
    }
}

async fn pump_both(a: TcpStream, b: TcpStream, rx: watch::Receiver<Mode>) {
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    tokio::select! {
        _ = pump(ar, bw, rx.clone()) => {}
        _ = pump(br, aw, rx) => {}
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut rx: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if wait_open(&mut rx).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Ok(mode) = wait_open(&mut rx).await else {
            return;
        };
        if let Mode::Latency(d) = mode {
            tokio::time::sleep(d).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits while the mode is `Blackhole`; returns the mode then in force.
async fn wait_open(rx: &mut watch::Receiver<Mode>) -> Result<Mode, watch::error::RecvError> {
    loop {
        let mode = *rx.borrow_and_update();
        if mode != Mode::Blackhole {
            return Ok(mode);
        }
        rx.changed().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        serve(None).await
    }

    /// A server that greets every connection with `tag` and then echoes.
    async fn tag_server(tag: u8) -> SocketAddr {
        serve(Some(tag)).await
    }

    /// An echo server, greeting every connection with `tag` first if given.
    async fn serve(tag: Option<u8>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    if let Some(tag) = tag {
                        let _ = s.write_all(&[tag]).await;
                    }
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn forwards_blackholes_and_resets() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut buf = [0u8; 2];
        c.write_all(b"hi").await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        proxy.set(Mode::Blackhole);
        c.write_all(b"yo").await.unwrap();
        let held = tokio::time::timeout(Duration::from_millis(200), c.read_exact(&mut buf)).await;
        assert!(held.is_err(), "nothing passes a blackhole");
        proxy.set(Mode::Pass);
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"yo", "held bytes flow on heal");
        proxy.reset();
        let after = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(after, Ok(0) | Err(_)), "{after:?}");
    }

    #[tokio::test]
    async fn retarget_resets_and_sends_new_connections_to_the_new_server() {
        let (first, second) = (tag_server(b'1').await, tag_server(b'2').await);
        let proxy = Proxy::start(first).await.unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut buf = [0u8; 1];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"1");
        proxy.retarget(second);
        assert_eq!(proxy.target(), second);
        let after = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
            .await
            .unwrap();
        assert!(
            matches!(after, Ok(0) | Err(_)),
            "old connection kept: {after:?}"
        );
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"2", "a new connection reached the old server");
    }
}
