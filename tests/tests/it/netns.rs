//! The lossy-network harness itself: UDP crosses a `LossyNetwork` whole at 0% loss and at the
//! set rate in each direction at 30%, TCP still delivers at 10%, networks do not share names
//! or addresses and leave nothing behind, and a `ProcessDaemon` answers from inside the
//! namespace (WebSocket and QUIC) and from this host.
//!
//! These need root and nftables. Without them they fail with the harness's error rather than
//! pass without testing anything.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use chatd_tests::wait::within;
use chatd_tests::{LossyNetwork, ProcessDaemon, ProcessOptions};
use protocol::Seq;
use protocol::client::{CertificatePin, ClientOptions, ServerTrust};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio::process::Child;

use crate::support::{cmid, login, login_with, room};

/// Datagrams per direction in the loss measurement.
const DATAGRAMS: usize = 2000;
/// Datagrams per round: a round ends with a control exchange, so no receive buffer ever
/// holds more than this many and overflows (which would look like loss).
const ROUND: usize = 100;
/// Arrivals of 2000 at 30% loss: Binomial(2000, 0.7) falls outside [1290, 1510] with
/// probability 7.5e-8, while 25% or 35% loss lands inside only 70% of the time and a rule
/// applied twice (49% arriving) never.
const ARRIVALS_AT_30_PERCENT: std::ops::RangeInclusive<usize> = 1290..=1510;

#[tokio::test]
async fn udp_crosses_whole_without_loss_and_at_the_set_rate_each_way_with_it() {
    let network = network();
    let (_server, port) = python_server(&network, UDP_SERVER).await;
    let socket = UdpSocket::bind((network.host_addr(), 0)).await.unwrap();
    socket
        .connect((network.namespace_addr(), port))
        .await
        .unwrap();

    echo_all(&socket, 200).await;

    network.set_loss(30).unwrap();
    assert_eq!(network.loss(), 30);
    let inbound = count_inbound(&socket).await;
    let outbound = count_outbound(&socket).await;
    assert!(
        ARRIVALS_AT_30_PERCENT.contains(&inbound),
        "{inbound} of {DATAGRAMS} datagrams reached the namespace at 30% loss"
    );
    assert!(
        ARRIVALS_AT_30_PERCENT.contains(&outbound),
        "{outbound} of {DATAGRAMS} datagrams left the namespace at 30% loss"
    );

    // Back to 0 replaces the rules: nothing is dropped any more.
    network.set_loss(0).unwrap();
    echo_all(&socket, 200).await;
}

#[tokio::test]
async fn tcp_delivers_everything_at_ten_percent_loss() {
    let network = network();
    network.set_loss(10).unwrap();
    let (_server, port) = python_server(&network, TCP_ECHO_SERVER).await;
    let address = SocketAddr::from((network.namespace_addr(), port));
    let payload: Vec<u8> = (0..8192_u32).map(|i| (i * 7 % 251) as u8).collect();

    let echoed = within("8 KiB echoed over TCP at 10% loss", TEST_BUDGET, async {
        let mut stream = connect_retrying(address).await;
        let (mut reader, mut writer) = stream.split();
        let mut echoed = vec![0; payload.len()];
        let (written, read) =
            tokio::join!(writer.write_all(&payload), reader.read_exact(&mut echoed));
        written.unwrap();
        read.unwrap();
        echoed
    })
    .await;
    assert!(echoed == payload, "the echo differs from what was sent");
}

#[test]
fn networks_are_apart_refuse_loss_over_100_and_leave_nothing_behind() {
    let first = network();
    let second = network();
    assert_ne!(first.namespace(), second.namespace());
    assert_ne!(first.host_interface(), second.host_interface());
    assert_ne!(first.host_addr(), second.host_addr());
    assert_ne!(first.namespace_addr(), second.namespace_addr());
    // Each end of a /30 is the other's neighbour.
    assert_eq!(
        u32::from(first.namespace_addr()),
        u32::from(first.host_addr()) + 1
    );

    let error = first.set_loss(101).unwrap_err();
    assert!(error.to_string().contains("101"), "{error:#}");
    assert_eq!(first.loss(), 0);

    let namespace = Path::new("/run/netns").join(first.namespace());
    let interface = Path::new("/sys/class/net").join(first.host_interface());
    assert!(namespace.exists() && interface.exists());
    drop(first);
    assert!(
        !namespace.exists(),
        "{} is left behind",
        namespace.display()
    );
    assert!(
        !interface.exists(),
        "{} is left behind",
        interface.display()
    );
}

#[tokio::test]
async fn a_daemon_in_the_namespace_serves_websocket_and_drains_on_sigterm() {
    let network = network();
    let mut daemon = ProcessDaemon::start(Some(&network), &ProcessOptions::default()).await;
    assert_eq!(
        daemon.url(),
        format!("ws://{}:7878", network.namespace_addr())
    );
    assert_eq!(daemon.quic_addr(), None);
    daemon.add_user("alice", "alice-pw").await;
    daemon.create_room("lobby", false).await;

    let alice = login(&daemon.url(), "alice", "alice-pw").await;
    alice.join(&room("lobby"), None).await.unwrap();
    let ack = alice
        .send(&room("lobby"), &cmid("a1"), "hello from outside")
        .await
        .unwrap();
    assert_eq!(ack.seq, Seq(1));
    alice.close().await;

    let status = daemon.terminate().await;
    assert!(
        status.success(),
        "chatd exited {status}; log:\n{}",
        daemon.log()
    );
}

#[tokio::test]
async fn a_daemon_in_the_namespace_serves_quic_and_dies_on_sigkill() {
    let network = network();
    let options = ProcessOptions {
        quic: true,
        ..ProcessOptions::default()
    };
    let mut daemon = ProcessDaemon::start(Some(&network), &options).await;
    let quic_url = daemon.quic_url().unwrap();
    assert_eq!(
        quic_url,
        format!("quic://{}:7879", network.namespace_addr())
    );
    daemon.add_user("alice", "alice-pw").await;
    daemon.create_room("lobby", false).await;

    let alice = login_with(&quic_url, "alice", "alice-pw", pinned(&daemon)).await;
    alice.join(&room("lobby"), None).await.unwrap();
    let ack = alice.send(&room("lobby"), &cmid("a1"), "hi").await.unwrap();
    assert_eq!(ack.seq, Seq(1));

    daemon.kill().await;
    // Nothing listens in the namespace any more, so the port refuses at once.
    let refused = TcpStream::connect(daemon.websocket_addr()).await;
    assert!(refused.is_err(), "chatd still accepts after SIGKILL");
}

#[tokio::test]
async fn a_daemon_on_this_host_serves_both_transports_on_free_ports() {
    let options = ProcessOptions {
        quic: true,
        ..ProcessOptions::default()
    };
    let daemon = ProcessDaemon::start(None, &options).await;
    assert!(daemon.websocket_addr().ip().is_loopback());
    assert!(daemon.admin_socket().starts_with(daemon.data_dir()));
    daemon.add_user("alice", "alice-pw").await;
    daemon.create_room("lobby", false).await;

    let over_websocket = login(&daemon.url(), "alice", "alice-pw").await;
    let over_quic = login_with(
        &daemon.quic_url().unwrap(),
        "alice",
        "alice-pw",
        pinned(&daemon),
    )
    .await;
    for (client, id) in [(&over_websocket, "w1"), (&over_quic, "q1")] {
        client.join(&room("lobby"), None).await.unwrap();
        client.send(&room("lobby"), &cmid(id), id).await.unwrap();
    }
    assert!(
        daemon.log().contains("chatd listening on"),
        "{}",
        daemon.log()
    );
}

/// A fresh network, or the test fails with why there is none (not root, no nftables).
fn network() -> LossyNetwork {
    LossyNetwork::create().unwrap_or_else(|error| panic!("no lossy test network: {error:#}"))
}

/// Client options that trust exactly the certificate the daemon's QUIC listener serves.
fn pinned(daemon: &ProcessDaemon) -> ClientOptions {
    let sha256 = daemon.quic_sha256().expect("QUIC is on");
    ClientOptions {
        trust: ServerTrust::Pinned(sha256.parse::<CertificatePin>().unwrap()),
        ..ClientOptions::default()
    }
}

/// Runs the Python `script` inside the namespace with its address as the argument and
/// returns the process with the port it printed once listening. The script exits when its
/// standard input closes, so it goes with the test even if the test process is killed.
async fn python_server(network: &LossyNetwork, script: &str) -> (Child, u16) {
    let mut child = network
        .command("python3")
        .args(["-c", script, &network.namespace_addr().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().unwrap();
    let line = within("the Python server's port", TEST_BUDGET, async {
        BufReader::new(stdout).lines().next_line().await.unwrap()
    })
    .await
    .expect("the Python server prints its port");
    (child, line.trim().parse().unwrap())
}

/// `count` echo round trips, one at a time; each must come back.
async fn echo_all(socket: &UdpSocket, count: usize) {
    let mut buffer = [0; 2048];
    for i in 0..count {
        let request = format!("echo {i}");
        socket.send(request.as_bytes()).await.unwrap();
        let read = within(&format!("the reply to `{request}`"), TEST_BUDGET, async {
            socket.recv(&mut buffer).await.unwrap()
        })
        .await;
        assert_eq!(&buffer[..read], request.as_bytes());
    }
}

/// Sends [`DATAGRAMS`] datagrams into the namespace and returns how many arrived.
async fn count_inbound(socket: &UdpSocket) -> usize {
    let mut arrived = 0;
    for round in 0..DATAGRAMS / ROUND {
        for i in 0..ROUND {
            let data = format!("data {round}.{i}");
            socket.send(data.as_bytes()).await.unwrap();
        }
        // Sent after the round, so its answer counts every datagram of the round that
        // arrived.
        let prefix = format!("count {round} ");
        let reply = exchange(socket, &format!("count {round}"), |reply| {
            reply.starts_with(&prefix)
        })
        .await;
        arrived = reply[prefix.len()..].parse().unwrap();
    }
    arrived
}

/// Has the namespace send [`DATAGRAMS`] datagrams out and returns how many arrived.
async fn count_outbound(socket: &UdpSocket) -> usize {
    let mut arrived = HashSet::new();
    for round in 0..DATAGRAMS / ROUND {
        let end = format!("end {round}");
        // The server sends a round once, however often it is asked, and ends it with the
        // end marker, so the round's survivors are in before the marker is.
        let request = format!("burst {round} {ROUND}");
        let replies = exchange_collecting(socket, &request, |reply| reply == end);
        for datagram in replies.await {
            if datagram.starts_with("burst ") {
                arrived.insert(datagram);
            }
        }
    }
    arrived.len()
}

/// Sends `request` until a datagram for which `is_reply` holds comes back (the request or
/// the reply may be lost), and returns that reply.
async fn exchange(socket: &UdpSocket, request: &str, is_reply: impl Fn(&str) -> bool) -> String {
    let mut received = exchange_collecting(socket, request, is_reply).await;
    received.pop().expect("the reply is last")
}

/// As [`exchange`], returning every datagram received until then, the reply last.
async fn exchange_collecting(
    socket: &UdpSocket,
    request: &str,
    is_reply: impl Fn(&str) -> bool,
) -> Vec<String> {
    within(&format!("a reply to `{request}`"), TEST_BUDGET, async {
        let mut received = Vec::new();
        let mut buffer = [0; 2048];
        loop {
            socket.send(request.as_bytes()).await.unwrap();
            // A retransmission timer: round trips here take well under a millisecond.
            let retry = tokio::time::sleep(RETRANSMIT);
            tokio::pin!(retry);
            loop {
                tokio::select! {
                    () = &mut retry => break,
                    read = socket.recv(&mut buffer) => {
                        let datagram = String::from_utf8_lossy(&buffer[..read.unwrap()]).into_owned();
                        let done = is_reply(&datagram);
                        received.push(datagram);
                        if done {
                            return received;
                        }
                    }
                }
            }
        }
    })
    .await
}

/// Connects to `address`, starting over with a new connection when one attempt takes more
/// than 2.5 s: a lost SYN is retried after 1 s, then 2 s, 4 s..., so a fresh attempt bounds
/// the time far better than waiting out the backoff.
async fn connect_retrying(address: SocketAddr) -> TcpStream {
    for _ in 0..6 {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_millis(2500), TcpStream::connect(address)).await
        {
            return stream;
        }
    }
    panic!("no TCP connection to {address} in 6 attempts");
}

/// Bounds each wait in these tests, well under the 30 s a test may take.
const TEST_BUDGET: Duration = Duration::from_secs(20);
const RETRANSMIT: Duration = Duration::from_millis(100);

/// The UDP side of the measurements. `echo X` comes back as is; `data X` is counted once
/// per distinct X and `count R` answers `count R N`; `burst R N` sends `burst R 0` ...
/// `burst R N-1` the first time round R is asked for, then (every time) `end R`.
const UDP_SERVER: &str = r#"
import os, socket, sys, threading
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# Root may exceed rmem_max with SO_RCVBUFFORCE (33 on Linux; not every Python names it): a
# full buffer would drop datagrams and look like loss.
s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 1 << 22)
s.bind((sys.argv[1], 0))
print(s.getsockname()[1], flush=True)
seen, bursts = set(), set()
while True:
    data, peer = s.recvfrom(2048)
    kind, _, rest = data.partition(b" ")
    if kind == b"echo":
        s.sendto(data, peer)
    elif kind == b"data":
        seen.add(rest)
    elif kind == b"count":
        s.sendto(b"count %s %d" % (rest, len(seen)), peer)
    elif kind == b"burst":
        rnd, n = rest.split()
        if rnd not in bursts:
            bursts.add(rnd)
            for i in range(int(n)):
                s.sendto(b"burst %s %d" % (rnd, i), peer)
        s.sendto(b"end " + rnd, peer)
"#;

/// A TCP echo server, one thread per connection.
const TCP_ECHO_SERVER: &str = r#"
import os, socketserver, sys, threading
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)
class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
server = Server((sys.argv[1], 0), Echo)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;
