//! Kernel TLS (kTLS): after rustls' handshake, the kernel takes the
//! connection's keys and encrypts what the socket sends and decrypts what
//! it receives, so the drivers move plaintext, and the io_uring loop keeps
//! its batched sends and receives over TLS.
//!
//! What is here is the kernel's side only: whether the kernel offers the
//! `tls` upper-layer protocol and which ciphers ([`probe`]), the
//! `tls_crypto_info` a socket takes for a direction ([`crypto_info`],
//! [`install`]), the records that are not application data, which a
//! plain receive under kTLS refuses with `EIO` and leaves queued
//! ([`read_record`]: a `recvmsg` with room for the record type), and the
//! kernel's own counters of offloaded sessions ([`Stat`]). The session
//! decides when (see `session::tls`); the drivers call these on their
//! socket's file descriptor.
//!
//! Both directions are offloaded. The receive side needs the session to
//! take TLS 1.3 records the server sends after the handshake (session
//! tickets, which rustls keeps for resumption; a key update, which ends
//! the connection: kernels before 6.13 cannot change the keys of a
//! running session; alerts, of which `close_notify` is the end of the
//! stream).

use std::io;
use std::os::fd::RawFd;

use rustls::{ConnectionTrafficSecrets, ProtocolVersion};

/// `--ktls`: whether connections hand their keys to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// Where the kernel and the backend can: uring-loop, epoll-loop and
    /// threads on a kernel with the `tls` module.
    #[default]
    Auto,
    /// Always; a run where it cannot be is refused with the reason.
    On,
    /// Never: TLS in userspace (rustls) only.
    Off,
}

const SOL_TLS: libc::c_int = 282;
const TLS_TX: libc::c_int = 1;
const TLS_RX: libc::c_int = 2;
/// The control message a receive carries with a record's content type.
const TLS_GET_RECORD_TYPE: libc::c_int = 2;
const TLS_1_2_VERSION: u16 = 0x0303;
const TLS_1_3_VERSION: u16 = 0x0304;
const CIPHER_AES_GCM_128: u16 = 51;
const CIPHER_AES_GCM_256: u16 = 52;
const CIPHER_CHACHA20_POLY1305: u16 = 54;

/// A direction of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// What the socket receives (also installs the `tls` ULP, which
    /// the receive side is set up first for: see `session::tls`).
    Rx,
    /// What the socket sends.
    Tx,
}

/// The ciphers this kernel's kTLS takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ciphers {
    pub aes_gcm_128: bool,
    pub aes_gcm_256: bool,
    pub chacha20_poly1305: bool,
}

impl Ciphers {
    /// Whether rustls' cipher suite `suite` can be handed to this kernel.
    pub fn takes(&self, suite: rustls::CipherSuite) -> bool {
        use rustls::CipherSuite as S;
        match suite {
            S::TLS13_AES_128_GCM_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => self.aes_gcm_128,
            S::TLS13_AES_256_GCM_SHA384
            | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => self.aes_gcm_256,
            S::TLS13_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => self.chacha20_poly1305,
            _ => false,
        }
    }
}

/// Whether the kernel offers kernel TLS, and which ciphers: the `tls`
/// ULP and a transmit key of each cipher are tried on loopback
/// connections (the kernel loads the module itself if it has one).
/// `Err` says why not, in words for `doctor` and the report. Probed once
/// per process (each `compare` row asks again).
pub fn probe() -> Result<Ciphers, String> {
    static PROBED: std::sync::OnceLock<Result<Ciphers, String>> = std::sync::OnceLock::new();
    PROBED.get_or_init(probe_now).clone()
}

fn probe_now() -> Result<Ciphers, String> {
    let mut ciphers = Ciphers::default();
    let mut first_error = None;
    for (cipher, flag) in [
        (CIPHER_AES_GCM_128, &mut ciphers.aes_gcm_128),
        (CIPHER_AES_GCM_256, &mut ciphers.aes_gcm_256),
        (CIPHER_CHACHA20_POLY1305, &mut ciphers.chacha20_poly1305),
    ] {
        match try_cipher(cipher) {
            Ok(()) => *flag = true,
            // No `tls` module: no cipher will do (and each try would ask
            // the kernel to load it again).
            Err(e) if e.contains("`tls`") => return Err(e),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if ciphers == Ciphers::default() {
        return Err(first_error.unwrap_or_else(|| "no cipher is offered".into()));
    }
    Ok(ciphers)
}

/// Sets up kTLS transmit with a zero key of `cipher` on a fresh loopback
/// connection.
fn try_cipher(cipher: u16) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let stream = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let fd = stream.as_raw_fd();
    set_ulp(fd).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => format!(
            "this kernel has no `tls` module ({e}): built without CONFIG_TLS, or `modprobe tls` fails"
        ),
        _ => format!("the kernel refused the `tls` ULP: {e}"),
    })?;
    let info = layout(TLS_1_3_VERSION, cipher, &[0; 12], &[0; 32], 0)
        .ok_or_else(|| "unknown cipher".to_string())?;
    setsockopt(fd, SOL_TLS, TLS_TX, &info).map_err(|e| format!("cipher {cipher}: {e}"))
}

/// The `tls_crypto_info` for one direction of a connection: the version,
/// the cipher, and its IV, key, salt and record sequence number as
/// `linux/tls.h` lays them out. `None` for a cipher kTLS does not have.
///
/// TLS 1.2 with AES-GCM sends an explicit nonce in every record, which
/// the kernel takes from the installed IV and increments by one per
/// record, while rustls made it `IV XOR sequence number` for the records
/// it sent (the Finished, the first requests): the kernel's first nonce
/// would be the Finished's, under the same key, which breaks GCM. For the
/// send direction (`dir` Tx) the kernel's nonces start at the IV with its
/// top bit flipped: rustls' used `IV XOR s` for s < 2^63, all with the
/// IV's top bit, and the kernel's stay on the other side for 2^63 records
/// (received records carry their own nonce: nothing to do there).
pub fn crypto_info(
    version: ProtocolVersion,
    secrets: &ConnectionTrafficSecrets,
    seq: u64,
    dir: Dir,
) -> Option<Vec<u8>> {
    let tls12 = version == ProtocolVersion::TLSv1_2;
    let version = match version {
        ProtocolVersion::TLSv1_2 => TLS_1_2_VERSION,
        ProtocolVersion::TLSv1_3 => TLS_1_3_VERSION,
        _ => return None,
    };
    let gcm_iv = |iv: &[u8]| -> Vec<u8> {
        let mut iv = iv.to_vec();
        if tls12 && dir == Dir::Tx && iv.len() == 12 {
            // The explicit nonce is iv[4..12], big-endian.
            iv[4] ^= 0x80;
        }
        iv
    };
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => layout(
            version,
            CIPHER_AES_GCM_128,
            &gcm_iv(iv.as_ref()),
            key.as_ref(),
            seq,
        ),
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => layout(
            version,
            CIPHER_AES_GCM_256,
            &gcm_iv(iv.as_ref()),
            key.as_ref(),
            seq,
        ),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => layout(
            version,
            CIPHER_CHACHA20_POLY1305,
            iv.as_ref(),
            key.as_ref(),
            seq,
        ),
        _ => None,
    }
}

/// `struct tls12_crypto_info_*`: the 4-byte header (version, cipher
/// type, native byte order), then byte arrays with no padding between
/// them. AES-GCM splits rustls' 12-byte IV into a 4-byte salt and an
/// 8-byte IV (laid out iv, key, salt, rec_seq); ChaCha20-Poly1305 takes
/// all 12 bytes as its IV and has no salt.
fn layout(version: u16, cipher: u16, iv: &[u8], key: &[u8], seq: u64) -> Option<Vec<u8>> {
    let key_len = match cipher {
        CIPHER_AES_GCM_128 => 16,
        CIPHER_AES_GCM_256 | CIPHER_CHACHA20_POLY1305 => 32,
        _ => return None,
    };
    if iv.len() != 12 || key.len() < key_len {
        return None;
    }
    let mut out = Vec::with_capacity(4 + 12 + key_len + 8);
    out.extend_from_slice(&version.to_ne_bytes());
    out.extend_from_slice(&cipher.to_ne_bytes());
    if cipher == CIPHER_CHACHA20_POLY1305 {
        out.extend_from_slice(iv);
        out.extend_from_slice(&key[..key_len]);
    } else {
        out.extend_from_slice(&iv[4..]);
        out.extend_from_slice(&key[..key_len]);
        out.extend_from_slice(&iv[..4]);
    }
    out.extend_from_slice(&seq.to_be_bytes());
    Some(out)
}

/// Hands one direction's keys to the kernel on `fd` (the receive side
/// first installs the `tls` ULP).
pub fn install(fd: RawFd, dir: Dir, info: &[u8]) -> io::Result<()> {
    match dir {
        Dir::Rx => {
            set_ulp(fd)?;
            setsockopt(fd, SOL_TLS, TLS_RX, info)
        }
        Dir::Tx => setsockopt(fd, SOL_TLS, TLS_TX, info),
    }
}

fn set_ulp(fd: RawFd) -> io::Result<()> {
    setsockopt(fd, libc::SOL_TCP, libc::TCP_ULP, b"tls")
}

fn setsockopt(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &[u8]) -> io::Result<()> {
    // SAFETY: setsockopt reads `value.len()` bytes from a live slice and
    // writes nothing of ours; a descriptor that is not an open socket is
    // an error (EBADF, ENOTSOCK), not undefined behaviour.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A TLS record's content types (RFC 8446 §5.1).
pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const APPLICATION_DATA: u8 = 23;

/// Reads the record at the head of a kTLS socket's receive queue, which
/// a plain receive refused (`EIO`: a record that is not application
/// data): its content type and its decrypted payload. Does not block.
pub fn read_record(fd: RawFd) -> io::Result<(u8, Vec<u8>)> {
    // A TLS record's plaintext is at most 2^14 bytes.
    let mut data = vec![0u8; 16 * 1024 + 256];
    // Room for one control message with one byte (the record type),
    // aligned for `cmsghdr`.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (over `data`) and `control`, which
    // live until the call returns and have the lengths given; the kernel
    // writes at most those lengths.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    data.truncate(n as usize);
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other("kernel TLS: a record's type did not fit"));
    }
    let mut kind = APPLICATION_DATA;
    // SAFETY: the CMSG_* walk stays inside `msg.msg_control` and
    // `msg.msg_controllen`, which the kernel set (CMSG_NXTHDR returns null
    // past them); the type byte is read only from a message whose length
    // covers it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == SOL_TLS
                && (*cmsg).cmsg_type == TLS_GET_RECORD_TYPE
                && (*cmsg).cmsg_len as usize >= libc::CMSG_LEN(1) as usize
            {
                kind = *libc::CMSG_DATA(cmsg);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((kind, data))
}

/// The kernel's kTLS counters (`/proc/net/tls_stat`): sessions set up
/// in software, each direction. They tell that the kernel did the
/// encryption (`doctor --self-test`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    pub tx_sw: u64,
    pub rx_sw: u64,
    /// Records that failed to decrypt.
    pub decrypt_errors: u64,
}

impl Stat {
    /// The counters now; `None` where the kernel has no kTLS.
    pub fn read() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/net/tls_stat").ok()?;
        Some(Self::parse(&text))
    }

    fn parse(text: &str) -> Self {
        let mut stat = Self::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(name), Some(value)) = (words.next(), words.next()) else {
                continue;
            };
            let value = value.parse().unwrap_or(0);
            match name {
                "TlsTxSw" => stat.tx_sw = value,
                "TlsRxSw" => stat.rx_sw = value,
                "TlsDecryptError" => stat.decrypt_errors = value,
                _ => {}
            }
        }
        stat
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::cipher::{AeadKey, Iv};

    #[test]
    fn aes_gcm_128_is_laid_out_as_linux_tls_h_says() {
        let key: [u8; 16] = std::array::from_fn(|i| i as u8 + 1);
        let iv: [u8; 12] = std::array::from_fn(|i| 0xa0 + i as u8);
        let secrets = ConnectionTrafficSecrets::Aes128Gcm {
            key: AeadKey::from(pad32(&key)),
            iv: Iv::new(iv),
        };
        let info = crypto_info(ProtocolVersion::TLSv1_3, &secrets, 7, Dir::Tx).unwrap();
        // sizeof(struct tls12_crypto_info_aes_gcm_128) == 40
        assert_eq!(info.len(), 40);
        assert_eq!(&info[0..2], &0x0304u16.to_ne_bytes());
        assert_eq!(&info[2..4], &51u16.to_ne_bytes());
        assert_eq!(&info[4..12], &iv[4..], "iv: the nonce's last 8 bytes");
        assert_eq!(&info[12..28], &key);
        assert_eq!(&info[28..32], &iv[..4], "salt: the nonce's first 4 bytes");
        assert_eq!(&info[32..40], &[0, 0, 0, 0, 0, 0, 0, 7], "big-endian");
    }

    #[test]
    fn aes_gcm_256_and_chacha_have_their_sizes() {
        let secrets = ConnectionTrafficSecrets::Aes256Gcm {
            key: AeadKey::from([9; 32]),
            iv: Iv::new([1; 12]),
        };
        // sizeof(struct tls12_crypto_info_aes_gcm_256) == 56
        let info = crypto_info(ProtocolVersion::TLSv1_2, &secrets, 1, Dir::Rx).unwrap();
        assert_eq!(info.len(), 56);
        assert_eq!(&info[0..2], &0x0303u16.to_ne_bytes());
        let iv: [u8; 12] = std::array::from_fn(|i| i as u8);
        let secrets = ConnectionTrafficSecrets::Chacha20Poly1305 {
            key: AeadKey::from([9; 32]),
            iv: Iv::new(iv),
        };
        // sizeof(struct tls12_crypto_info_chacha20_poly1305) == 56
        let info = crypto_info(ProtocolVersion::TLSv1_3, &secrets, 0, Dir::Tx).unwrap();
        assert_eq!(info.len(), 56);
        assert_eq!(&info[4..16], &iv, "the whole nonce is the IV");
        assert_eq!(&info[16..48], &[9; 32]);
    }

    /// The kernel's explicit nonces for TLS 1.2 AES-GCM sends (IV, IV+1,
    /// ...) never meet those rustls used before the hand-over (IV XOR s
    /// for the records it sent); receives keep the IV as it is.
    #[test]
    fn tls12_gcm_sends_never_reuse_a_nonce_rustls_used() {
        for base in [
            0u64,
            1,
            2,
            0x7fff_ffff_ffff_fffe,
            u64::MAX - 3,
            0x1234_5678_9abc_def0,
        ] {
            let mut iv = [0u8; 12];
            iv[..4].copy_from_slice(&[1, 2, 3, 4]);
            iv[4..].copy_from_slice(&base.to_be_bytes());
            let secrets = ConnectionTrafficSecrets::Aes128Gcm {
                key: AeadKey::from([7; 32]),
                iv: Iv::new(iv),
            };
            let tx = crypto_info(ProtocolVersion::TLSv1_2, &secrets, 3, Dir::Tx).unwrap();
            let rx = crypto_info(ProtocolVersion::TLSv1_2, &secrets, 3, Dir::Rx).unwrap();
            assert_eq!(&rx[4..12], &base.to_be_bytes(), "receive: as is");
            assert_eq!(&tx[28..32], &[1, 2, 3, 4], "the salt stays");
            let start = u64::from_be_bytes(tx[4..12].try_into().unwrap());
            // The kernel's first 1,000 nonces against rustls' first 1,000.
            for k in 0..1000u64 {
                let kernel = start.wrapping_add(k);
                for s in 0..1000u64 {
                    assert_ne!(
                        kernel,
                        base ^ s,
                        "base {base:#x}: record {k} reuses rustls' {s}"
                    );
                }
            }
            // TLS 1.3 XORs the sequence number into the whole IV: as is.
            let tx13 = crypto_info(ProtocolVersion::TLSv1_3, &secrets, 3, Dir::Tx).unwrap();
            assert_eq!(&tx13[4..12], &base.to_be_bytes());
        }
    }

    #[test]
    fn only_suites_of_the_kernels_ciphers_are_taken() {
        use rustls::CipherSuite as S;
        let c = Ciphers {
            aes_gcm_128: true,
            aes_gcm_256: false,
            chacha20_poly1305: false,
        };
        assert!(c.takes(S::TLS13_AES_128_GCM_SHA256));
        assert!(c.takes(S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256));
        assert!(!c.takes(S::TLS13_AES_256_GCM_SHA384));
        assert!(!c.takes(S::TLS13_CHACHA20_POLY1305_SHA256));
        assert!(!c.takes(S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256));
    }

    #[test]
    fn the_kernel_counters_are_read_from_tls_stat() {
        let text = "TlsCurrTxSw                     \t1\nTlsCurrRxSw                     \t1\nTlsTxSw                         \t12\nTlsRxSw                         \t11\nTlsDecryptError                 \t0\n";
        assert_eq!(
            Stat::parse(text),
            Stat {
                tx_sw: 12,
                rx_sw: 11,
                decrypt_errors: 0
            }
        );
    }

    fn pad32(key: &[u8; 16]) -> [u8; 32] {
        let mut out = [0; 32];
        out[..16].copy_from_slice(key);
        out
    }
}
