//! [`LossyNetwork`]: a private network namespace joined to this one by a veth pair whose
//! namespace end drops a chosen share of packets, so tests can run a server inside and
//! clients outside over a lossy link.
//!
//! The loss is an nftables `netdev` table on the namespace's veth end, with an `ingress` and
//! an `egress` chain that each drop `numgen random mod 100 < P`. Dropping there, below IP,
//! hits TCP and UDP alike in both directions and is invisible to sockets: a send still
//! succeeds, as on a real lossy path. (An `inet` output-hook drop would instead make
//! `sendmsg` fail with EPERM, which no real network does.)
//!
//! Needs root (CAP_NET_ADMIN), `ip` (iproute2) and `nft` (nftables).
//!
//! # Names and addresses
//! Each network takes a slot out of 2^15: the /30 `198.18.0.0/15 + 4 × slot` (RFC 2544's
//! range for network test equipment, so it meets no real network), the namespace
//! `chatd-loss-SLOT` and the interfaces `chloss{SLOT}h` (this end) and `chloss{SLOT}n`. The
//! slot is claimed by creating the namespace, which `ip netns add` does exclusively (it
//! fails with "File exists"), so parallel tests and parallel test processes never share one;
//! a slot left behind by a killed process is skipped.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::hash::{BuildHasher as _, RandomState};
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use anyhow::{Context as _, bail};

/// A namespace behind a lossy veth link. Dropping it deletes the namespace and the link.
#[derive(Debug)]
pub struct LossyNetwork {
    namespace: String,
    host_interface: String,
    namespace_interface: String,
    host_addr: Ipv4Addr,
    namespace_addr: Ipv4Addr,
    ip: PathBuf,
    nft: PathBuf,
    loss: AtomicU8,
}

impl LossyNetwork {
    /// Creates the namespace, the veth pair and their addresses, with no loss yet.
    ///
    /// Runs a few short commands and blocks while they do (milliseconds).
    ///
    /// # Errors
    /// When not running as root ("needs root (CAP_NET_ADMIN)"), when `ip` or `nft` is
    /// missing (the message names the Debian package), or when a command fails (the message
    /// has the command and its standard error).
    pub fn create() -> anyhow::Result<Self> {
        if !has_net_admin() {
            bail!("a lossy test network needs root (CAP_NET_ADMIN) to create network namespaces");
        }
        let ip = find_program("ip")
            .context("a lossy test network needs `ip`: install the Debian package iproute2")?;
        let nft = find_program("nft")
            .context("a lossy test network needs `nft`: install the Debian package nftables")?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Random per process (RandomState's keys are), so processes start at different
        // slots and a taken slot usually costs one retry at most.
        let hasher = RandomState::new();
        for _ in 0..64 {
            let draw = hasher.hash_one((std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
            let slot = u32::try_from(draw % u64::from(SLOTS)).context("slot fits in u32")?;
            if let Some(network) = Self::claim(slot, &ip, &nft)? {
                return Ok(network);
            }
        }
        bail!("no free slot for a lossy test network after 64 tries (see `ip netns list`)")
    }

    /// Sets up slot `slot`, or returns `None` when another network holds it.
    fn claim(slot: u32, ip: &Path, nft: &Path) -> anyhow::Result<Option<Self>> {
        let namespace = format!("chatd-loss-{slot}");
        let output = Command::new(ip)
            .args(["netns", "add", &namespace])
            .stdin(Stdio::null())
            .output()
            .context("cannot run `ip netns add`")?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if stderr.contains("File exists") {
                return Ok(None);
            }
            bail!(
                "`ip netns add {namespace}` failed ({}): {}",
                output.status,
                stderr.trim()
            );
        }
        let base = u32::from(FIRST_ADDRESS) + 4 * slot;
        // From here on, dropping the value cleans up whatever was made.
        let network = Self {
            namespace,
            host_interface: format!("chloss{slot}h"),
            namespace_interface: format!("chloss{slot}n"),
            host_addr: Ipv4Addr::from(base + 1),
            namespace_addr: Ipv4Addr::from(base + 2),
            ip: ip.to_owned(),
            nft: nft.to_owned(),
            loss: AtomicU8::new(0),
        };
        network.link()?;
        Ok(Some(network))
    }

    /// Makes the veth pair, one end in the namespace, addresses both ends and brings them
    /// (and the namespace's loopback) up.
    fn link(&self) -> anyhow::Result<()> {
        let (host, inside, ns) = (
            &self.host_interface,
            &self.namespace_interface,
            &self.namespace,
        );
        let host_cidr = format!("{}/30", self.host_addr);
        let inside_cidr = format!("{}/30", self.namespace_addr);
        let steps: [&[&str]; 6] = [
            &[
                "link", "add", host, "type", "veth", "peer", "name", inside, "netns", ns,
            ],
            &["addr", "add", &host_cidr, "dev", host],
            &["link", "set", host, "up"],
            &["-n", ns, "addr", "add", &inside_cidr, "dev", inside],
            &["-n", ns, "link", "set", inside, "up"],
            &["-n", ns, "link", "set", "lo", "up"],
        ];
        for args in steps {
            run(Command::new(&self.ip).args(args), None)?;
        }
        Ok(())
    }

    /// The address of this (the root namespace's) end of the link.
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host_addr
    }

    /// The address of the namespace's end: what a server inside binds and clients outside
    /// connect to.
    pub fn namespace_addr(&self) -> Ipv4Addr {
        self.namespace_addr
    }

    /// The name of this end's veth interface.
    pub fn host_interface(&self) -> &str {
        &self.host_interface
    }

    /// The namespace's name, for `ip netns exec NAME ...`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The share of packets dropped in each direction, in percent.
    pub fn loss(&self) -> u8 {
        self.loss.load(Ordering::Relaxed)
    }

    /// Drops `percent` of the packets crossing the link, independently in each direction
    /// (so a round trip survives with probability (1 − p)²); 0 stops dropping. Replaces the
    /// previous setting in one atomic nftables transaction. Blocks for the few milliseconds
    /// `nft` takes.
    ///
    /// # Errors
    /// When `percent` is over 100, or `nft` fails (the message has its standard error).
    pub fn set_loss(&self, percent: u8) -> anyhow::Result<()> {
        if percent > 100 {
            bail!("loss must be a percentage from 0 to 100, not {percent}");
        }
        // Declaring the table first makes the delete valid when there is none yet.
        let mut rules = format!("table netdev {TABLE} {{}}\ndelete table netdev {TABLE}\n");
        if percent > 0 {
            let device = &self.namespace_interface;
            let _ = writeln!(rules, "table netdev {TABLE} {{");
            for hook in ["ingress", "egress"] {
                let _ = writeln!(
                    rules,
                    "  chain {hook} {{ type filter hook {hook} device \"{device}\" priority 0; \
                     numgen random mod 100 < {percent} drop; }}"
                );
            }
            rules.push_str("}\n");
        }
        run(
            Command::new(&self.ip)
                .args(["netns", "exec", &self.namespace])
                .arg(&self.nft)
                .args(["-f", "-"]),
            Some(&rules),
        )?;
        self.loss.store(percent, Ordering::Relaxed);
        Ok(())
    }

    /// A command that runs `program` inside the namespace (`ip netns exec NAMESPACE
    /// program`). `ip` replaces itself with `program`, so the child's pid is the program's
    /// and signals reach it. Add arguments, stdio and `kill_on_drop` as usual.
    pub fn command(&self, program: impl AsRef<OsStr>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.ip);
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program);
        command
    }
}

impl Drop for LossyNetwork {
    fn drop(&mut self) {
        // Deleting the host end takes the pair down at once, even while a process still
        // holds the namespace open; deleting the namespace frees the slot. Best effort: a
        // failure leaves only a slot that the next networks skip.
        for args in [
            ["link", "del", self.host_interface.as_str()],
            ["netns", "del", self.namespace.as_str()],
        ] {
            let _ = Command::new(&self.ip)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs `command` with `stdin` as its input and fails with its standard error unless it
/// exits 0.
fn run(command: &mut Command, stdin: Option<&str>) -> anyhow::Result<()> {
    let line = format!("{command:?}");
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {line}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .with_context(|| format!("cannot write the input of {line}"))?;
    }
    let output = child
        .wait_with_output()
        .with_context(|| format!("cannot wait for {line}"))?;
    if !output.status.success() {
        bail!(
            "{line} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Whether this process has CAP_NET_ADMIN (bit 12 of `CapEff` in /proc/self/status).
/// Unknown counts as yes, so the commands themselves report what is wrong.
fn has_net_admin() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return true;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_none_or(|mask| mask & (1 << CAP_NET_ADMIN) != 0)
}

/// `name` on PATH or in the sbin directories, which a non-login root shell's PATH may lack.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The first address of 198.18.0.0/15, whose 2^17 addresses make [`SLOTS`] /30 subnets.
const FIRST_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
const SLOTS: u32 = 1 << 15;
/// The nftables table holding the drop rules, inside the namespace.
const TABLE: &str = "chatd_loss";
