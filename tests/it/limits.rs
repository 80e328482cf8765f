//! Resource limits: ephemeral-port exhaustion is counted as
//! `address_unavailable` with advice, not a crash. (The open-file limit is
//! in `load.rs`: `too_many_connections_for_the_fd_limit_fails_early_with_advice`.)
//!
//! On the host's loopback TIME_WAIT reuse and a wide port range make
//! exhaustion slow and unreliable, so each run gets a fresh network
//! namespace (`unshare --net`, root) with six ephemeral ports and no
//! TIME_WAIT reuse; those sysctls are per namespace, so the host is not
//! touched. The server there answers and keeps the connection open, so it
//! is the client that closes first and holds each port in TIME_WAIT.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::load::n;
use crate::support::*;

/// Runs in the namespace: `$1` the binary, the rest its `load` arguments.
const SCRIPT: &str = r#"
set -e
ip link set lo up
sysctl -qw net.ipv4.ip_local_port_range="40000 40005"
sysctl -qw net.ipv4.tcp_tw_reuse=0
python3 -c '
import socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8080))
s.listen(128)
print("listening", flush=True)
def serve(c):
    buf = b""
    while True:
        d = c.recv(65536)
        if not d:
            break
        buf += d
        while b"\r\n\r\n" in buf:
            _, buf = buf.split(b"\r\n\r\n", 1)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
' > "$TMPDIR_NS/server.out" &
server=$!
trap 'kill $server' EXIT
for i in $(seq 200); do
  grep -q listening "$TMPDIR_NS/server.out" && break
  sleep 0.02
done
bin=$1
shift
"$bin" load "$@" http://127.0.0.1:8080/bar
"#;

/// Runs `load ARGS` in a fresh network namespace; returns stdout.
fn load_in_netns(args: &[&str]) -> String {
    let dir = temp_dir("netns");
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "bash", "-c", SCRIPT, "netns"])
        .arg(env!("CARGO_BIN_EXE_uringfetch"))
        .args(args)
        .env("TMPDIR_NS", &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("unshare (util-linux) is needed for this test: {e}; install it with `apt-get install -y util-linux`")
    });
    let out = wait_limited(
        &mut child,
        Duration::from_secs(30),
        "load in a network namespace",
    );
    let _ = std::fs::remove_dir_all(dir);
    assert!(
        out.status.success(),
        "load {args:?} in a fresh network namespace failed (this test needs root for \
         `unshare --net`, plus python3 and iproute2): {}",
        stderr(&out)
    );
    stdout(&out)
}

#[test]
fn ephemeral_port_exhaustion_is_counted_with_advice() {
    let backends: [&[&str]; 6] = [
        &["--backend", "uring-loop"],
        &["--backend", "uring-loop", "--uring-profile", "5.10"],
        &["--backend", "uring-async"],
        &["--backend", "epoll-loop"],
        &["--backend", "epoll-async"],
        &["--backend", "threads"],
    ];
    let common = [
        "--disable-keepalive",
        "-n",
        "40",
        "-c",
        "2",
        "--timeout",
        "2s",
    ];
    for b in backends {
        let args = [&common[..], b, &["--output", "json"]].concat();
        let out = load_in_netns(&args);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        crate::load::assert_counts_add_up(&v);
        // Six ports, one of which may be left in TIME_WAIT by the readiness probe.
        assert!(n(&v, "/requests/completed") <= 6, "{b:?}: {v}");
        assert!(
            n(&v, "/errors/address_unavailable") >= 34,
            "{b:?}: counted as address_unavailable: {v}"
        );
        assert_eq!(
            n(&v, "/errors/address_unavailable") + n(&v, "/requests/completed"),
            40,
            "{b:?}: nothing else went wrong: {v}"
        );
        // The advice works: --bind gives each connection slot its own
        // source address with six ports of its own; 8 slots x 5 requests fit.
        let args = [
            &[
                "--disable-keepalive",
                "-n",
                "40",
                "-c",
                "8",
                "--timeout",
                "2s",
            ][..],
            b,
            &["--bind", "127.0.0.2-127.0.0.9", "--output", "json"],
        ]
        .concat();
        let v: Value = serde_json::from_str(&load_in_netns(&args)).expect("JSON report");
        assert_eq!(n(&v, "/status/200"), 40, "{b:?} with --bind: {v}");
    }
    // The text report gives the advice.
    let text = load_in_netns(&common);
    assert!(text.contains("address_unavailable"), "{text}");
    assert!(
        text.contains("--bind") && text.contains("tcp_tw_reuse"),
        "advice: {text}"
    );
}
