//! The ring of one `uring-loop` worker: setup with the fastest flags the
//! kernel accepts, what the kernel supports (probed, never assumed), the
//! provided-buffer ring for multishot receives.
//!
//! Every fast path has a fallback to what Linux 5.10 offers, and
//! [`Profile::Linux510`] forces those fallbacks on new kernels so they stay
//! tested.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::{IoUring, opcode, types};

/// Which io_uring feature set to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Profile {
    /// Probe the kernel and use every fast path it has.
    #[default]
    #[value(name = "auto")]
    Auto,
    /// Only what Linux 5.10 has: plain connect/send/recv, a TIMEOUT op for
    /// timed waits, no setup flags.
    #[value(name = "5.10")]
    Linux510,
    /// `auto` without the provided-buffer ring: plain receives, each into
    /// its slot's own buffer, beside every other fast path (DEFER_TASKRUN,
    /// direct descriptors); what a kernel that refuses the buffer ring
    /// runs. For tests.
    #[value(name = "auto-plain-recv", hide = true)]
    AutoPlainRecv,
}

/// What this ring runs with; printed by `doctor` and in verbose output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Features {
    /// IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN (6.1).
    pub defer_taskrun: bool,
    /// IORING_SETUP_COOP_TASKRUN (5.19), when DEFER_TASKRUN is not there.
    pub coop_taskrun: bool,
    /// Multishot recv into a provided buffer ring (6.0).
    pub multishot_recv: bool,
    /// IOSQE_CQE_SKIP_SUCCESS on sends (5.17).
    pub skip_success: bool,
    /// Timed waits through io_uring_enter's extended argument (5.11).
    pub ext_arg: bool,
    /// Batched waits with a minimum-wait timeout (6.12).
    pub min_wait: bool,
    /// IORING_REGISTER_RING_FDS (5.18): waits enter through the ring's
    /// registered index, skipping the kernel's fd lookup on every enter.
    pub registered_ring: bool,
    /// That index, when registered (see [`enter`]).
    #[serde(skip)]
    pub ring_index: Option<u32>,
    /// MSG_WAITALL on stream sends, so a short send is finished by the kernel (5.19/6.0).
    pub send_waitall: bool,
    /// Sockets made by IORING_OP_SOCKET straight into a registered file
    /// table (direct descriptors, 5.19), used through IOSQE_FIXED_FILE by
    /// connect/send/recv, and torn down by ASYNC_CANCEL by descriptor
    /// (6.0) and CLOSE: no socket(2), close(2) or shutdown(2) calls, and no
    /// per-operation file reference counting. From 6.13 (see `build`); the
    /// worker also needs the table registered and no `--bind` (binding
    /// takes bind(2)).
    pub direct_descriptors: bool,
    /// IORING_ENTER_NO_IOWAIT (6.15): waits are not accounted as iowait.
    pub no_iowait: bool,
}

impl Features {
    /// Successful sends post no completion: MSG_WAITALL has the kernel
    /// finish a short send itself, so CQE_SKIP_SUCCESS loses nothing.
    pub fn silent_sends(&self) -> bool {
        self.skip_success && self.send_waitall
    }
}

/// `(major, minor)` of the running kernel, from uname.
pub fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// Builds a ring of `entries` SQEs with the best setup flags accepted.
pub fn build(entries: u32, profile: Profile) -> io::Result<(IoUring, Features)> {
    let mut f = Features::default();
    let cq = entries.saturating_mul(4).max(1024);
    let ring = if profile == Profile::Linux510 {
        IoUring::builder().setup_cqsize(cq).build(entries)?
    } else {
        let defer = IoUring::builder()
            .setup_cqsize(cq)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries);
        match defer {
            Ok(r) => {
                f.defer_taskrun = true;
                r
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                match IoUring::builder()
                    .setup_cqsize(cq)
                    .setup_coop_taskrun()
                    .build(entries)
                {
                    Ok(r) => {
                        f.coop_taskrun = true;
                        r
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        IoUring::builder().setup_cqsize(cq).build(entries)?
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    };
    let ring = ring;
    if profile != Profile::Linux510 {
        let p = ring.params();
        f.skip_success = p.is_feature_skip_cqe_on_success();
        f.ext_arg = p.is_feature_ext_arg();
        f.min_wait = p.is_feature_min_timeout();
        f.no_iowait = p.is_feature_no_iowait();
        let mut probe = io_uring::Probe::new();
        let probed = ring.submitter().register_probe(&mut probe).is_ok();
        let (major, minor) = kernel_version();
        // Multishot recv is a flag, not an opcode, so a probe cannot see
        // it: it came with 6.0, with buffer rings (5.19) before it.
        f.multishot_recv = probed && probe.is_supported(opcode::Recv::CODE) && major >= 6;
        f.send_waitall = (major, minor) >= (6, 0);
        // SOCKET and CLOSE are probed; cancel by fixed descriptor (6.0)
        // cannot be. Before 6.13 the kernel releases files removed from the
        // table only in order, once every earlier operation on any fixed
        // file has finished: behind a keep-alive connection's multishot
        // receive, a closed socket would stay open (no FIN) until the run
        // ends. So direct descriptors start at 6.13 (kernel commit
        // 7029acd8a950); older kernels use socket(2). A direct socket gets
        // TCP_NODELAY through URING_CMD's SETSOCKOPT (6.7), which every
        // 6.13 kernel has.
        f.direct_descriptors = probed
            && probe.is_supported(opcode::Socket::CODE)
            && probe.is_supported(opcode::Close::CODE)
            && probe.is_supported(opcode::AsyncCancel::CODE)
            && probe.is_supported(opcode::SetSockOpt::CODE)
            && (major, minor) >= (6, 13);
        f.ring_index = register_ring_index(&ring);
        f.registered_ring = f.ring_index.is_some();
    }
    Ok((ring, f))
}

/// Submits a no-op and waits for it: a seccomp filter may allow
/// `io_uring_setup` and refuse `io_uring_enter`, and then nothing the loop
/// queues would ever run. One enter at setup, before the run's clock.
pub fn check_enter(ring: &mut IoUring) -> io::Result<()> {
    let nop = opcode::Nop::new().build().user_data(0);
    // SAFETY: a no-op references no memory.
    unsafe { ring.submission().push(&nop) }
        .map_err(|_| io::Error::other("a fresh submission queue is full"))?;
    ring.submit_and_wait(1)?;
    let result = ring.completion().next().map(|c| c.result());
    match result {
        Some(r) if r < 0 => Err(io::Error::from_raw_os_error(-r)),
        _ => Ok(()),
    }
}

/// `IORING_REGISTER_RING_FDS`, from the kernel's uapi.
const IORING_REGISTER_RING_FDS: libc::c_uint = 20;
/// `IORING_UNREGISTER_RING_FDS`, from the kernel's uapi.
const IORING_UNREGISTER_RING_FDS: libc::c_uint = 21;
/// `io_uring_enter` flags, from the kernel's uapi.
const IORING_ENTER_GETEVENTS: libc::c_uint = 1;
const IORING_ENTER_EXT_ARG: libc::c_uint = 8;
const IORING_ENTER_REGISTERED_RING: libc::c_uint = 16;
/// `IORING_ENTER_NO_IOWAIT` (6.15).
const IORING_ENTER_NO_IOWAIT: libc::c_uint = 128;

/// `struct io_uring_rsrc_update`, the argument of IORING_REGISTER_RING_FDS.
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// Registers the ring's own descriptor with IORING_REGISTER_RING_FDS and
/// returns the index it got. (The io-uring crate remembers that index only
/// in the short-lived `Submitter` that registered it, and every
/// `ring.submitter()` is a new one, so its waits would never use it.)
fn register_ring_index(ring: &IoUring) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let mut update = RsrcUpdate {
        // u32::MAX: let the kernel pick a free index.
        offset: u32::MAX,
        resv: 0,
        data: ring.as_raw_fd() as u64,
    };
    (ring_fds(ring, IORING_REGISTER_RING_FDS, &mut update) == 1).then_some(update.offset)
}

/// Undoes [`register_ring_index`]. The registration holds a reference to
/// the ring for the registering thread, so without this a dropped `IoUring`
/// would live on (with its pending operations) until that thread exits.
/// Must run on the thread that registered.
pub fn unregister_ring_index(ring: &IoUring, index: u32) {
    let mut update = RsrcUpdate {
        offset: index,
        resv: 0,
        data: 0,
    };
    ring_fds(ring, IORING_UNREGISTER_RING_FDS, &mut update);
}

/// One IORING_(UN)REGISTER_RING_FDS call on one entry; the syscall's result.
fn ring_fds(ring: &IoUring, opcode: libc::c_uint, update: &mut RsrcUpdate) -> libc::c_long {
    use std::os::fd::AsRawFd;
    // SAFETY: io_uring_register reads (and, registering, writes the chosen
    // offset into) one io_uring_rsrc_update: our repr(C) copy of the uapi
    // struct, borrowed mutably for the call. It touches no other memory.
    unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring.as_raw_fd(),
            opcode,
            update as *mut RsrcUpdate,
            1 as libc::c_uint,
        )
    }
}

/// Submits everything queued and waits for `want` completions, bounded by
/// `args` (timeout, minimum wait): one io_uring_enter with
/// IORING_ENTER_EXT_ARG, through the registered ring index when there is
/// one.
pub fn enter(
    ring: &mut IoUring,
    index: Option<u32>,
    no_iowait: bool,
    want: u32,
    args: &types::SubmitArgs<'_, '_>,
) -> io::Result<usize> {
    let Some(index) = index else {
        let flags = if no_iowait {
            io_uring::EnterFlags::NO_IOWAIT
        } else {
            io_uring::EnterFlags::empty()
        };
        return ring
            .submitter()
            .submit_with_args_and_flags(want as usize, args, flags);
    };
    let to_submit = ring.submission().len() as libc::c_uint;
    let mut flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG | IORING_ENTER_REGISTERED_RING;
    if no_iowait {
        flags |= IORING_ENTER_NO_IOWAIT;
    }
    // SAFETY: `SubmitArgs` is repr(transparent) over the uapi struct
    // io_uring_getevents_arg (24 bytes), whose timespec pointer, if any, is
    // kept alive by the borrow in `args` for this call; the kernel only reads
    // it. The SQ tail was published by the queue guards (they store it when
    // dropped), so the kernel sees every entry it is told to submit.
    let entered = unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            index as libc::c_int,
            to_submit,
            want as libc::c_uint,
            flags,
            args as *const types::SubmitArgs<'_, '_> as *const libc::c_void,
            GETEVENTS_ARG_SIZE,
        )
    };
    if entered < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(entered as usize)
    }
}

/// `sizeof(struct io_uring_getevents_arg)`.
const GETEVENTS_ARG_SIZE: libc::size_t = 24;
const _: () = assert!(std::mem::size_of::<types::SubmitArgs<'_, '_>>() == GETEVENTS_ARG_SIZE);

/// [`build`], then the provided-buffer ring multishot receives need
/// (`count` buffers of `size` bytes, group 0). A kernel that refuses the
/// buffer ring loses multishot receives, not the ring. The `uring-loop`
/// backend and `doctor` both set up through here, so `doctor` reports the
/// profile the backend really runs with.
pub fn setup(
    entries: u32,
    profile: Profile,
    count: u16,
    size: usize,
) -> io::Result<(IoUring, Features, Option<BufRing>)> {
    let (ring, mut features) = build(entries, profile)?;
    if profile == Profile::AutoPlainRecv {
        features.multishot_recv = false;
    }
    let bufs = if features.multishot_recv {
        match BufRing::new(&ring, count, size, 0) {
            Ok(b) => Some(b),
            Err(_) => {
                features.multishot_recv = false;
                None
            }
        }
    } else {
        None
    };
    Ok((ring, features, bufs))
}

/// A provided-buffer ring: `count` buffers of `size` bytes the kernel picks
/// from for multishot receives; each is handed back after its bytes are parsed.
pub struct BufRing {
    ring: *mut BufRingEntry,
    ring_layout: Layout,
    bufs: Vec<u8>,
    size: usize,
    mask: u16,
    tail: u16,
    pub bgid: u16,
}

impl BufRing {
    /// Allocates, registers and fills the ring. `count` must be a power of two <= 32768.
    pub fn new(ring: &IoUring, count: u16, size: usize, bgid: u16) -> io::Result<Self> {
        debug_assert!(count.is_power_of_two());
        let ring_layout =
            Layout::from_size_align(count as usize * std::mem::size_of::<BufRingEntry>(), 4096)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the layout has a non-zero size (count >= 1) and a valid
        // power-of-two alignment; zeroed memory is a valid BufRingEntry array.
        let ptr = unsafe { alloc_zeroed(ring_layout) } as *mut BufRingEntry;
        if ptr.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut me = Self {
            ring: ptr,
            ring_layout,
            bufs: vec![0; count as usize * size],
            size,
            mask: count - 1,
            tail: 0,
            bgid,
        };
        // SAFETY: `ptr` is page-aligned, `count` entries long and lives until
        // `Drop`, which the owner runs only after unregistering the ring
        // (see `unregister`) or never (the memory is leaked on purpose).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ptr as u64, count, bgid, 0)?;
        }
        for bid in 0..count {
            me.stage(bid);
        }
        me.publish();
        Ok(me)
    }

    /// The size of each buffer.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The bytes the kernel put in buffer `bid`.
    pub fn data(&self, bid: u16, len: usize) -> &[u8] {
        let start = (bid as usize & self.mask as usize) * self.size;
        &self.bufs[start..start + len.min(self.size)]
    }

    /// Queues buffer `bid` for return; [`BufRing::publish`] makes it visible.
    pub fn stage(&mut self, bid: u16) {
        let idx = (self.tail & self.mask) as usize;
        let addr = self.bufs.as_ptr() as u64
            + (bid as usize & self.mask as usize) as u64 * self.size as u64;
        // SAFETY: `idx` < count, so the entry is inside the ring allocation;
        // the kernel only reads entries between its head and our published
        // tail, and this one is past the published tail.
        let entry = unsafe { &mut *self.ring.add(idx) };
        entry.set_addr(addr);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes every staged buffer to the kernel with one release store.
    pub fn publish(&self) {
        // SAFETY: the ring pointer is the first entry of a live, initialised
        // ring, whose `resv` field of entry 0 is the shared tail; the kernel
        // reads it atomically, so we write it through an AtomicU16 of the
        // same size and alignment.
        unsafe {
            let tail = BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// Unregisters the ring so its memory may be freed.
    pub fn unregister(&self, ring: &IoUring) -> io::Result<()> {
        ring.submitter().unregister_buf_ring(self.bgid)
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this exact layout; the owner drops
        // a BufRing only after unregistering it (or forgets it instead).
        unsafe { dealloc(self.ring as *mut u8, self.ring_layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_version_is_read() {
        assert!(kernel_version().0 >= 5);
    }
}
