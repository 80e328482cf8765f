//! Shared helpers: real peers on loopback (our demo server in-process, nginx
//! from Debian, Python's http.server, small hand-rolled raw servers) and a
//! way to run the built binary. A missing peer fails the test with the line
//! that installs it; nothing passes silently.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use uringfetch::testing::{ServeOptions, ServerHandle, server};

pub const INSTALL_NGINX: &str =
    "apt-get update && apt-get install -y nginx-light libnginx-mod-http-echo";
pub const INSTALL_PYTHON: &str = "apt-get install -y python3";

/// The demo server in-process on 127.0.0.1, port 0.
pub fn demo_server(delay: Duration) -> ServerHandle {
    server::start(ServeOptions {
        threads: 2,
        idle_timeout: Duration::from_secs(10),
        // The peer of the client tests: io_uring, never a silent fallback.
        engine: server::Engine::Uring,
        ..ServeOptions::in_process(delay)
    })
    .expect("demo server starts")
}

/// Runs the uringfetch binary with a time limit; kills it if it overruns.
pub fn uringfetch(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_uringfetch"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    wait_limited(&mut child, limit, &format!("uringfetch {}", args.join(" ")))
}

/// Waits for a child, killing it and failing the test past `limit`.
pub fn wait_limited(child: &mut Child, limit: Duration, what: &str) -> Output {
    let start = Instant::now();
    // Drain pipes in threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut v);
        }
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut v);
        }
        v
    });
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Output {
                status,
                stdout: t_out.join().unwrap(),
                stderr: t_err.join().unwrap(),
            };
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&t_err.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A port that was free a moment ago (for servers that cannot bind port 0).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
pub struct Peer {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: Option<PathBuf>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

pub fn wait_listening(addr: SocketAddr, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what} did not start listening on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "uringfetch-{tag}-{}-{}",
        std::process::id(),
        DIRS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn find_nginx() -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("nginx is not installed: install it with `{INSTALL_NGINX}`");
}

pub const ECHO_MODULE: &str = "/usr/lib/nginx/modules/ngx_http_echo_module.so";

/// Writes `conf` to `dir`/nginx.conf and starts nginx `bin` on it.
pub fn spawn_nginx(bin: &Path, dir: &Path, conf: &str) -> std::process::Child {
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    Command::new(bin)
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts")
}

/// A test nginx's configuration: one worker in the foreground with the
/// echo module, its files under `dir`, the `http` settings every test
/// nginx shares, then `http`'s own directives and server blocks.
pub fn nginx_conf(dir: &Path, http: &str) -> String {
    format!(
        r#"load_module {ECHO_MODULE};
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    default_type application/octet-stream;
{http}
}}
"#,
        dir = dir.display(),
    )
}

/// nginx from Debian on a free loopback port, one worker, serving:
/// `/bar` (static, 4 bytes), `/big` (static, 100000 bytes), `/chunked`
/// (echo module, chunked), `/sleep` (echo_sleep 1 s), `/close` (no keep-alive).
pub fn nginx() -> Peer {
    (0..5)
        .find_map(|_| nginx_with(None))
        .expect("nginx started on none of 5 free ports (see its error.log)")
}

/// The certificates an https test needs, made with rcgen in a temporary
/// directory: a CA, a server certificate it signed for `localhost`,
/// `127.0.0.1` and `uringfetch.test`, one for another name, an expired one, and a client
/// certificate it signed.
pub struct TlsFiles {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub wrong_name: (PathBuf, PathBuf),
    pub expired: (PathBuf, PathBuf),
    pub client: (PathBuf, PathBuf),
}

impl TlsFiles {
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let dir = temp_dir("tls");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "uringfetch test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let leaf = |name: &str, names: &[&str], expired: bool| {
            let mut params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    .unwrap();
            params.distinguished_name.push(DnType::CommonName, names[0]);
            if expired {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            (
                write(&format!("{name}.pem"), cert.pem()),
                write(&format!("{name}.key"), key.serialize_pem()),
            )
        };
        // `uringfetch.test` never resolves: tests reach it by --connect-to.
        let (cert, key) = leaf(
            "server",
            &["localhost", "127.0.0.1", "uringfetch.test"],
            false,
        );
        Self {
            ca: write("ca.pem", ca.pem()),
            cert,
            key,
            wrong_name: leaf("wrong-name", &["other.invalid"], false),
            expired: leaf("expired", &["localhost", "127.0.0.1"], true),
            client: leaf("client", &["uringfetch test client"], false),
            dir,
        }
    }

    pub fn ca(&self) -> &str {
        self.ca.to_str().unwrap()
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// nginx with `ssl` too: the locations of [`nginx`] on `tls_port` (TLS 1.2
/// and 1.3, the [`TlsFiles`] server certificate), and `/bar` on
/// `client_auth_port`, which asks for a client certificate of the CA.
pub struct NginxTls {
    pub peer: Peer,
    pub tls_port: u16,
    pub client_auth_port: u16,
}

pub fn nginx_tls(files: &TlsFiles) -> NginxTls {
    (0..5)
        .find_map(|_| {
            let (tls_port, client_auth_port) = (free_port(), free_port());
            let peer = nginx_with(Some((files, tls_port, client_auth_port)))?;
            Some(NginxTls {
                peer,
                tls_port,
                client_auth_port,
            })
        })
        .expect("nginx started on none of 5 sets of free ports (see its error.log)")
}

/// nginx on free ports, once all of them listen; `None` if it exited
/// (another test took a port between `free_port` and nginx's bind).
fn nginx_with(tls: Option<(&TlsFiles, u16, u16)>) -> Option<Peer> {
    let bin = find_nginx();
    assert!(
        Path::new(ECHO_MODULE).exists(),
        "nginx's echo module is not installed: install it with `{INSTALL_NGINX}`"
    );
    let dir = temp_dir("nginx");
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("bar"), b"bar\n").unwrap();
    let big: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(root.join("big"), big).unwrap();
    let port = free_port();
    let (tls_listen, tls_server) = match tls {
        None => (String::new(), String::new()),
        Some((f, tls_port, auth_port)) => (
            format!(
                "listen 127.0.0.1:{tls_port} ssl backlog=4096;\n        \
                 ssl_certificate {}; ssl_certificate_key {};\n        \
                 ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:tls:1m;",
                f.cert.display(),
                f.key.display()
            ),
            format!(
                "server {{ listen 127.0.0.1:{auth_port} ssl; ssl_certificate {}; \
                 ssl_certificate_key {}; ssl_client_certificate {}; ssl_verify_client on; \
                 root {}; }}",
                f.cert.display(),
                f.key.display(),
                f.ca.display(),
                root.display()
            ),
        ),
    };
    let conf = nginx_conf(
        &dir,
        &format!(
            r#"    server {{
        listen 127.0.0.1:{port} backlog=4096;
        {tls_listen}
        root {root};
        location = /chunked {{ default_type text/plain; echo "hello"; echo_flush; echo "chunked world"; }}
        location = /sleep {{ echo_sleep 1; echo "slept"; }}
        location = /close {{ keepalive_timeout 0; alias {root}/bar; }}
        location = /limited {{ keepalive_requests 3; alias {root}/bar; }}
    }}
    {tls_server}"#,
            root = root.display(),
        ),
    );
    let child = spawn_nginx(&bin, &dir, &conf);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut peer = Peer {
        child,
        addr,
        dir: Some(dir.clone()),
    };
    let mut ports = vec![port];
    if let Some((_, a, b)) = tls {
        ports.extend([a, b]);
    }
    let start = Instant::now();
    loop {
        if peer.child.try_wait().ok().flatten().is_some() {
            return None;
        }
        if ports
            .iter()
            .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
        {
            return Some(peer);
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nginx did not start listening on {ports:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `python3 -m http.server` on a free loopback port, serving a directory
/// with `hello.txt` (HTTP/1.0, close-delimited bodies).
pub fn python_http_server() -> Peer {
    let dir = temp_dir("py");
    std::fs::write(dir.join("hello.txt"), b"hello from python\n").unwrap();
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 is missing ({e}): install it with `{INSTALL_PYTHON}`"));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let peer = Peer {
        child,
        addr,
        dir: Some(dir),
    };
    wait_listening(addr, "python3 -m http.server");
    peer
}

/// A raw TCP server: every accepted connection is handed to `handle` on its
/// own thread. It stops accepting when dropped.
pub struct RawServer {
    pub addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RawServer {
    pub fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handle = std::sync::Arc::new(handle);
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let h = handle.clone();
                        std::thread::spawn(move || h(stream));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads a request head (up to the blank line) from `reader`; `None` on EOF.
fn head_from(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            return Some(head);
        }
    }
}

/// Reads one request head (up to the blank line); `None` on EOF.
pub fn read_head(stream: &mut TcpStream) -> Option<String> {
    head_from(&mut BufReader::new(stream.try_clone().ok()?))
}

/// Reads one request: its head and a body of `Content-Length` bytes.
pub fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let head = head_from(&mut reader)?;
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// Writes all bytes, ignoring a client that went away.
pub fn send(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
    let _ = stream.flush();
}

/// curl's view of a URL's body, for byte-exact comparisons.
pub fn curl(url: &str, include: bool) -> Vec<u8> {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "10"]);
    if include {
        cmd.arg("-i");
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("curl is installed (apt-get install -y curl)");
    out.stdout
}

/// A keep-alive HTTP/1.1 server that answers `ok` at once, except that every
/// response due in `[stall_from, stall_from + stall_for)` after its start is
/// held until the stall ends: the whole server stops for a while.
pub fn stalling_server(stall_from: Duration, stall_for: Duration) -> RawServer {
    let t0 = Instant::now();
    RawServer::start(move |mut s| {
        while read_request(&mut s).is_some() {
            let now = t0.elapsed();
            if now >= stall_from && now < stall_from + stall_for {
                std::thread::sleep(stall_from + stall_for - now);
            }
            send(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    })
}

/// Invokes a suite macro with every backend configuration: the five I/O
/// models and uring-loop on its Linux 5.10 profile. A new backend is one
/// line here, and every suite runs on it.
macro_rules! every_backend {
    ($suite:ident) => {
        $suite! {
            uring_loop => ["uring-loop"],
            uring_loop_510 => ["uring-loop", "--uring-profile", "5.10"],
            // DEFER_TASKRUN and direct descriptors with plain receives: a
            // receive of a closed connection may still complete into the
            // slot's buffer when the next connection wants it.
            uring_loop_plain_recv => ["uring-loop", "--uring-profile", "auto-plain-recv"],
            uring_async => ["uring-async"],
            epoll_loop => ["epoll-loop"],
            epoll_async => ["epoll-async"],
            threads => ["threads"],
        }
    };
}
pub(crate) use every_backend;

/// The largest resident set a process reaches while it runs, sampled.
pub fn peak_rss_kb(child: &mut std::process::Child) -> u64 {
    let mut peak = 0;
    while child.try_wait().ok().flatten().is_none() {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
        if let Some(kb) = status.ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        }) {
            peak = peak.max(kb);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    peak
}

/// A listener whose accept queue is full and never drained: further
/// connects stay in SYN_SENT (their SYNs are dropped) until given up.
pub fn blackhole() -> (socket2::Socket, Vec<socket2::Socket>, String) {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    // Fill the queue (backlog 0 admits one) with connects of our own.
    let fillers: Vec<Socket> = (0..2)
        .map(|_| {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.connect(&addr.into());
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    (listener, fillers, format!("http://{addr}/"))
}
