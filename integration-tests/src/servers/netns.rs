//! A private network for a server cluster: one Linux network namespace per member,
//! so member links can be cut, flapped and healed like real cables.
//!
//! ```text
//!   root namespace (tests, clients)          switch namespace
//!   flXXXX 10.A.B.1/24  ──────────────────── host ─┐
//!                                                  ├─ client bridge ── c0 ─ member 0: c0 10.A.B.2
//!                                                  │                ── c1 ─ member 1: c1 10.A.B.3 ...
//!                                                  └─ peer bridge ──── p0 ─ member 0: p0 10.A.(B+1).2
//!                                                                   ── p1 ─ member 1: p1 10.A.(B+1).3 ...
//! ```
//!
//! Every member has two links, both ending on a bridge in a namespace of their own
//! (the *switch*): a **client** link, on the network the root namespace (where the
//! tests and their clients run) reaches through one veth pair, and a **peer** link, on
//! a network only the members share (raft / quorum traffic). Cutting a member's peer
//! link cuts it off from the other members while its clients still reach it (a leader
//! cut off from its majority); cutting both isolates it. A cut link drops packets
//! silently, as a pulled cable does: TCP connections hang, nothing is refused.
//!
//! Needs root (or `CAP_NET_ADMIN`) and the `ip` tool; [`Fabric::available`] says
//! whether this process has both. Every namespace is named `fencelock-<pid>-<n>-…`;
//! dropping the fabric deletes its namespaces, which destroys every link it made
//! (the kernel removes the root-side veth with its peer in the switch, shortly
//! after). Namespaces left by a process that died without dropping its fabric are
//! deleted by the next [`Fabric::create`].

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The `ip` tool (Debian's `iproute2`).
const IP: &str = "/usr/sbin/ip";

/// Fabrics created by this process so far, for unique names and subnets.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Which of a member's links a cut or heal touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The link to the other members only (raft or quorum traffic).
    Peers,
    /// The link to the clients only.
    Clients,
    /// Both: the member is isolated.
    Both,
}

/// The namespaces, bridges and links of one cluster; see the module docs.
#[derive(Debug)]
pub struct Fabric {
    /// `fencelock-<pid>-<n>`: the prefix of every namespace name.
    tag: String,
    /// The root-side veth's name (at most 15 bytes).
    root_link: String,
    /// The client network's first three octets.
    client_net: [u8; 3],
    /// The peer network's first three octets.
    peer_net: [u8; 3],
    /// How many members.
    members: usize,
}

impl Fabric {
    /// True when this process may create namespaces: it runs as root and the `ip`
    /// tool exists.
    pub fn available() -> bool {
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        root && Path::new(IP).is_file()
    }

    /// Creates the switch and `members` member namespaces with their links up.
    ///
    /// # Errors
    /// [`io::ErrorKind::PermissionDenied`] without root; otherwise the failing `ip`
    /// command and its output. What was already made is removed again.
    pub fn create(members: usize) -> io::Result<Fabric> {
        if !Self::available() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("network namespaces need root and {IP}"),
            ));
        }
        remove_stale();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Subnets 10.A.B.0/24 (clients) and 10.A.B+1.0/24 (peers): A from the PID,
        // B from the fabric number, so concurrent test processes rarely meet; a
        // clash shows as an `ip addr add` error.
        let a = 64 + (pid % 128) as u8;
        let b = ((n * 2) % 250) as u8;
        let fabric = Fabric {
            tag: format!("fencelock-{pid}-{n}"),
            root_link: format!("fl{:x}", (pid << 8 | (n & 0xff)) & 0xfff_ffff),
            client_net: [10, a, b],
            peer_net: [10, a, b + 1],
            members,
        };
        // On error, `fabric` is dropped here and takes what exists with it.
        fabric.build()?;
        Ok(fabric)
    }

    fn build(&self) -> io::Result<()> {
        let sw = self.switch();
        ip(&["netns", "add", &sw])?;
        for bridge in ["brc", "brp"] {
            ip(&["-n", &sw, "link", "add", bridge, "type", "bridge"])?;
            ip(&["-n", &sw, "link", "set", bridge, "up"])?;
        }
        for i in 0..self.members {
            let ns = self.namespace(i);
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            for (link, bridge, net) in [
                (format!("c{i}"), "brc", self.client_net),
                (format!("p{i}"), "brp", self.peer_net),
            ] {
                ip(&[
                    "link", "add", &link, "netns", &ns, "type", "veth", "peer", "name", &link,
                    "netns", &sw,
                ])?;
                ip(&["-n", &sw, "link", "set", &link, "master", bridge, "up"])?;
                let addr = format!("{}/24", host(net, i + 2));
                ip(&["-n", &ns, "addr", "add", &addr, "dev", &link])?;
                ip(&["-n", &ns, "link", "set", &link, "up"])?;
            }
        }
        ip(&[
            "link",
            "add",
            &self.root_link,
            "type",
            "veth",
            "peer",
            "name",
            "host",
            "netns",
            &sw,
        ])?;
        ip(&["-n", &sw, "link", "set", "host", "master", "brc", "up"])?;
        let addr = format!("{}/24", host(self.client_net, 1));
        ip(&["addr", "add", &addr, "dev", &self.root_link])?;
        ip(&["link", "set", &self.root_link, "up"])?;
        Ok(())
    }

    /// How many members.
    pub fn members(&self) -> usize {
        self.members
    }

    /// The name of member `i`'s namespace.
    pub fn namespace(&self, i: usize) -> String {
        format!("{}-m{i}", self.tag)
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.tag)
    }

    /// Member `i`'s address on the client network (what clients connect to).
    pub fn client_ip(&self, i: usize) -> Ipv4Addr {
        host(self.client_net, i + 2)
    }

    /// Member `i`'s address on the peer network (what the other members connect to).
    pub fn peer_ip(&self, i: usize) -> Ipv4Addr {
        host(self.peer_net, i + 2)
    }

    /// `program` run inside member `i`'s namespace (`ip netns exec NS program`, which
    /// execs it: the child's PID is the program's).
    pub fn command(&self, i: usize, program: &Path) -> Command {
        let mut command = Command::new(IP);
        command
            .args(["netns", "exec", &self.namespace(i)])
            .arg(program);
        command
    }

    /// Cuts member `i`'s `link` (packets are dropped silently until healed).
    ///
    /// # Errors
    /// The failing `ip` command.
    pub fn cut(&self, i: usize, link: Link) -> io::Result<()> {
        self.set(i, link, "down")
    }

    /// Heals member `i`'s `link`.
    ///
    /// # Errors
    /// The failing `ip` command.
    pub fn heal(&self, i: usize, link: Link) -> io::Result<()> {
        self.set(i, link, "up")
    }

    fn set(&self, i: usize, link: Link, state: &str) -> io::Result<()> {
        let sw = self.switch();
        let names = match link {
            Link::Peers => vec![format!("p{i}")],
            Link::Clients => vec![format!("c{i}")],
            Link::Both => vec![format!("p{i}"), format!("c{i}")],
        };
        for name in names {
            ip(&["-n", &sw, "link", "set", &name, state])?;
        }
        Ok(())
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        for i in 0..self.members {
            let _ = ip(&["netns", "del", &self.namespace(i)]);
        }
        let _ = ip(&["netns", "del", &self.switch()]);
        // Deleting the switch destroys the root-side veth too, but asynchronously;
        // delete it now so its subnet is free for the next fabric at once.
        let _ = ip(&["link", "del", &self.root_link]);
    }
}

/// `net.host`.
fn host(net: [u8; 3], host: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        net[0],
        net[1],
        net[2],
        u8::try_from(host).unwrap_or(u8::MAX),
    )
}

/// Runs `ip ARGS`; an error carries the command and its output.
fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new(IP).args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Deletes `fencelock-<pid>-…` namespaces whose process is gone.
fn remove_stale() {
    let Ok(out) = Command::new(IP).args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix("fencelock-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// A member reaches the root namespace through its client link; a cut link drops
    /// the traffic (the connect times out, nothing is refused); healing brings it
    /// back; dropping the fabric deletes its namespaces.
    #[test]
    fn cut_and_heal_a_member_link() {
        if !crate::servers::require(Fabric::available(), "root and ip (network namespaces)") {
            return;
        }
        let fabric = Fabric::create(2).expect("fabric");
        // Each member's namespace has its own two addresses.
        let out = Command::new(IP)
            .args(["-n", &fabric.namespace(0), "-brief", "addr"])
            .output()
            .expect("ip addr");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&fabric.client_ip(0).to_string()), "{text}");
        assert!(text.contains(&fabric.peer_ip(0).to_string()), "{text}");

        // Member 1 connects to a listener of this (root) namespace through its
        // client link.
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("listen");
        let port = listener.local_addr().expect("addr").port();
        let root = host(fabric.client_net, 1);
        let probe = |fabric: &Fabric| {
            fabric
                .command(1, Path::new("/usr/bin/timeout"))
                .args(["1", "bash", "-c"])
                .arg(format!("exec 3<>/dev/tcp/{root}/{port} && echo hi >&3"))
                .status()
                .expect("probe")
                .success()
        };
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten().take(2) {
                let mut stream: TcpStream = stream;
                let mut buf = [0u8; 3];
                let _ = stream.read_exact(&mut buf);
                let _ = stream.write_all(b"ok");
            }
        });
        assert!(probe(&fabric), "member 1 reaches the root namespace");
        fabric.cut(1, Link::Clients).expect("cut");
        assert!(!probe(&fabric), "a cut client link drops the traffic");
        fabric.heal(1, Link::Clients).expect("heal");
        std::thread::sleep(Duration::from_millis(200));
        assert!(probe(&fabric), "a healed link carries traffic again");
        let ns = fabric.namespace(0);
        drop(fabric);
        let list = Command::new(IP)
            .args(["netns", "list"])
            .output()
            .expect("list");
        assert!(
            !String::from_utf8_lossy(&list.stdout).contains(&ns),
            "dropping the fabric deletes its namespaces"
        );
    }
}
