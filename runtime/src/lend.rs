//! Large messages between ranks on one host, copied once: the sender lends the payload's pages
//! to a pipe (`vmsplice`), or lets the receiver read them out of its memory
//! (`process_vm_readv`, cross-memory attach: where the host has a core per rank and the
//! receiver may, every lent message, [`UNCROWDED_MEMORY_MIN`]; elsewhere from [`MEMORY_MIN`]
//! bytes on, or where the pipe is too short), and the receiver copies them into
//! their destination, where a socket copies every byte twice (into the kernel and out of it).
//! Open MPI and MPICH copy large messages once the same way (cross-memory attach). On by
//! default where the host has a core per rank; `PRUN_SINGLE_COPY` says otherwise (see
//! [`crate::env`]).
//!
//! Each sender keeps one pipe per receiver on its host ([`Pipe`], made at the first large
//! message), of up to [`LEND_MAX`] bytes (less when the host runs many ranks: [`pipe_size`]
//! keeps the pipes within the kernel's quota for one user; with too many for that, one page,
//! [`MEMORY_ONLY_PIPE`], and only messages read out of memory are lent: [`MEMORY_MIN`] bytes
//! and more, a scatter's blocks from [`MEMORY_ONLY_FAN_MIN`], a collective's exchange steps
//! from [`MEMORY_ONLY_EXCHANGE_MIN`]). A message shorter than
//! [`MEMORY_MIN`] that fits in the pipe goes through it where ranks share cores, or where the
//! receiver may not read the sender's memory: the sender puts the payload's pages
//! into the pipe ([`announce`]), all but a last piece of up to [`INLINE_MAX`] bytes (a
//! collective's signature), then writes a [`KIND_LEND`] frame on the connection: the usual
//! header (context, tag, payload length), its process id, the pipe's file descriptor number,
//! the length of that last piece, a count of pieces in memory (none), flags, and the last
//! piece's bytes. Any other stays where it is: the frame names [`IN_MEMORY`] instead of the pipe and
//! counts and lists the addresses and lengths of the payload's pieces in the sender's memory
//! (the receiver reads the frame's fixed part, then the rest, in two reads after the header).
//! The sender may do something else now (receive, in an exchange: [`crate::engine`]'s
//! `lend_while`), then waits on the connection ([`finish`]) for
//! one byte: [`READ`] when the receiver has copied the payload, or [`SEND`] when it could not
//! (the connection is not a Unix socket to the process that names the pipe or the memory,
//! `/proc` refused the pipe, or the kernel the memory: a security module such as Yama may
//! forbid one process to read another's), after which the sender writes the payload on the
//! connection as it would have, and stops lending that way to that receiver. A receiver tells
//! each sender which ways it can take as it accepts the sender's connection ([`Access`]), so
//! that a refusal is the exception: the first message through a pipe, should the receiver fail
//! to open it after all (out of file descriptors, say). An exchange whose two messages were both
//! refused would wait for ever (each sender writes its payload only once its own receive ends),
//! so that first message is answered before the sender receives ([`Pipe::proven`]); a pipe
//! once read is held open by its receiver, and memory is read or the connection fails (a
//! receiver no longer allowed to read it answers [`UNREADABLE`] first, so that both ranks' calls
//! say why). Either way the send returns once the payload is safe: the pipe refers to the
//! sender's pages, not to copies, so the caller may reuse its buffer only once they are read.
//! A send still never waits for the receiving program: the receiver's progress thread copies
//! the payload into a vector when no receive is posted for it, and a posted receive copies it
//! straight into its buffer. A sender that only waits (not receiving meanwhile) says so in its
//! frame's flags ([`HELPS`]), and a receive posted for such a message in memory shares the copy
//! ([`SHARE_MIN`]): it asks the sender to write the second half of its buffer ([`WRITE`],
//! `process_vm_writev`) while it reads the first, so that each side's core copies half.
//!
//! An exchange step's or a fan's message where ranks share cores is lent as a rendezvous
//! ([`RENDEZVOUS`], through the pipe or in memory): its receive is sure to come, so the receiver's progress
//! thread may leave it unread until the receive is posted ([`rendezvous`], the mailbox's
//! `defer`), and the payload is copied once, straight into place, even when it comes first.
//!
//! The receiver opens the sender's pipe as `/proc/PID/fd/FD`, once per connection, and reads
//! memory only of the process named, after checking that the process id is the one at the
//! other end of the Unix socket (`SO_PEERCRED`), so a peer can only make it read a pipe or
//! memory of its own; a sender asked to write writes only the bytes of the payload asked for,
//! and only into the process at the other end of its socket.
//!
//! Why a pipe below [`MEMORY_MIN`]: on the virtual machine this was first measured on,
//! cross-memory attach copied 1 MiB in 120-200 us, against 80-190 us for a pipe lent 1 MiB and
//! read, and 200-290 us for a Unix socket (a C program, one way with a one-byte answer); two
//! processes exchanging 1 MiB at once: 125-185 us by pipes, 200-290 us by a socket. On a later
//! one, the two were even at 1 MiB in bench/floor.c and cross-memory attach won from there on
//! (see [`MEMORY_MIN`]). A message longer than the pipe streamed through it (the sender
//! refilling it as the receiver empties it) was slower than the socket: both wait for the
//! pipe's lock, and one core copies the whole message where a socket has two.

use crate::transport::Stream;
use crate::wire::{HEADER_LEN, Header, KIND_LEND};
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, vmsplice};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::uio::{RemoteIoVec, process_vm_readv, process_vm_writev};
use nix::unistd::Pid;
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};

/// Messages of at least this many bytes to a rank on this host are lent rather than written.
pub(crate) const LEND_MIN: usize = 64 * 1024;
/// Where the host runs more ranks than it has cores, only messages of at least this many bytes
/// are lent: a lent message's sender waits for its receiver to be scheduled and copy it,
/// which costs more than the copy saves for shorter ones.
///
/// Measured at 8 ranks on 2 cores, lending every message of 64 KiB or more against none, three
/// alternating runs: 16 MiB broadcast 13.3 against 19.0 ms, scatter 11.7 against 17.5,
/// allreduce 43.9 against 53.1, gather 16.7 against 20.4, allgather 152 against 173
/// (ping-pong 2.8 against 2.6); at 1 MiB mixed (gather 603 against 306 us, scatter 721
/// against 922, allgather 6.9 against 8.1 ms); at 64 KiB slower (gather 140 against 51 us in
/// an earlier session). 4 MiB lies between the sizes measured. A program's own sends go from
/// [`CROWDED_SEND_MIN`].
pub(crate) const CROWDED_LEND_MIN: usize = 4 << 20;
/// Where the host runs more ranks than it has cores, the shortest message of a program's own
/// (point-to-point, not a collective's or a map's) that is lent.
///
/// Measured on an Intel Xeon (where waking a sleeping process costs more than copying a
/// megabyte twice), 8 ranks on 2 cores, alternating runs, from 1 MiB against 4 MiB: ping-pong
/// 77-82 against 118-122 us (Open MPI 74-96). A collective's sends stay at
/// [`CROWDED_LEND_MIN`]: lent from 1 MiB, a gather's root copied every block itself where over
/// sockets the senders copy theirs at once (1 MiB blocks, 8 ranks: 433-564 against 229-293 us;
/// 16 ranks: 1069 against 282).
pub(crate) const CROWDED_SEND_MIN: usize = 1 << 20;
/// Where the host runs more ranks than it has cores, the shortest message lent in an exchange
/// (the sender receiving meanwhile, both ranks copying at once); a fan of messages out at once
/// is lent from [`LEND_MIN`], since the sender waits once for all of them.
///
/// There an exchange's message is a rendezvous ([`RENDEZVOUS`]): it waits unread for
/// its receive rather than be copied into a vector first. Measured at 8 ranks on 2 cores, three
/// alternating runs, lent from 128 KiB against from 1 MiB: allreduce 1 MiB 1.55 against 1.85 ms
/// (the halving's exchanges of 128 to 512 KiB), 16 MiB equal; from 64 KiB, the 64 KiB
/// allreduce 332 against 292 us (recursive doubling's exchanges of 64 KiB). Before the
/// rendezvous, lending from 128 KiB gained nothing (1.79 against 1.80 ms).
pub(crate) const CROWDED_EXCHANGE_MIN: usize = 128 * 1024;
/// The pipe size a sender asks for, and so the largest message it lends (with up to
/// [`INLINE_MAX`] bytes more in the frame). Larger pipes need `CAP_SYS_RESOURCE`.
pub(crate) const LEND_MAX: usize = 1 << 20;
/// The size of each pipe where the host runs too many ranks for pipes to lend through
/// ([`pipe_size`] says `None`: 32 ranks and more with the kernel's default quota): one page,
/// which holds no lent message, so that messages are lent only from [`MEMORY_MIN`] bytes on (a
/// scatter's from [`MEMORY_ONLY_FAN_MIN`]) and read out of the sender's memory (one page per
/// pair of ranks keeps 64 ranks' pipes within the quota). Before, such hosts lent nothing.
/// Measured on 2 cores, 1 MiB per rank, against lending nothing (Open MPI in brackets): 32
/// ranks, two alternating runs, allgather 76 against 163 ms (106), scatter 0.26 against 2.9 ms
/// (0.76), broadcast, gather, allreduce and ping-pong within the noise; 64 ranks, one run,
/// allgather 0.32 against 0.70 s (0.44), scatter 0.41 against 5.4 ms (0.36), broadcast 2.7
/// against 3.1 ms (2.4).
pub(crate) const MEMORY_ONLY_PIPE: usize = 4096;
/// Where the host's pipes are of one page ([`MEMORY_ONLY_PIPE`]), the shortest message of a
/// fan of distinct buffers (a scatter's blocks) that is lent, read out of the sender's memory;
/// other messages from [`MEMORY_MIN`].
///
/// Measured at 32 ranks on 2 cores, three alternating runs, every message lent from 128 KiB
/// against from 1 MiB: scatter 128, 256 and 512 KiB 0.21, 0.17 and 0.10 of the time (77
/// against 369 us at 128 KiB), but the broadcast down its tree, whose children read one buffer,
/// 1.21-1.37 times, the allreduce 1.23 at 128 KiB and 0.97 at 512 KiB; gather and allgather
/// even. From 64 KiB, the 64 KiB scatter 56 against 205 us, the broadcast 280 against 213.
/// With only a scatter's fans lent from here (Open MPI in brackets): 32 ranks, 64 KiB scatter
/// 53 against 196 us (79), the other rows unchanged (three runs); 64 ranks 95 against 222 us
/// (93, two runs).
pub(crate) const MEMORY_ONLY_FAN_MIN: usize = LEND_MIN;
/// Where the host's pipes are of one page ([`MEMORY_ONLY_PIPE`]: too many ranks for the
/// kernel's pipe quota), the shortest exchange step's message lent, read out of the sender's
/// memory, as where ranks share cores and pipes lend it ([`CROWDED_EXCHANGE_MIN`]); shorter
/// ones, which a socket buffers so that the sender goes on, are written.
///
/// Measured at 32 ranks on 2 cores (twenty-fifth session), from 128 KiB against from 1 MiB, by
/// whole calls (wall time per call of runs at 1 and 11 times the iterations): 1 MiB allreduce
/// (recursive halving's exchanges of 512 KiB down to 32 KiB) 10.5 against 12.1 ms (Open MPI
/// 11.9), processor time 20.6 against 23.5 ms per call; 64 ranks 28.1 against 32.8 ms. By the
/// average over ranks: 512 KiB allreduce 6.49 against 6.97 ms; allgather 128 KiB to 1 MiB within
/// the noise (0.95-1.04). Before the allreduce of less than 256 KiB went up and down a tree,
/// recursive doubling's 128 KiB exchanges were slower lent (4.56 against 4.01 ms).
pub(crate) const MEMORY_ONLY_EXCHANGE_MIN: usize = CROWDED_EXCHANGE_MIN;
/// A lent message's last piece travels in its frame rather than the pipe when it is at most
/// this long (a collective's signature after a 1 MiB payload would not fit in a 1 MiB pipe).
pub(crate) const INLINE_MAX: usize = 4096;
/// Most pieces one lent message may lie in (one `vmsplice` takes up to 1024).
pub(crate) const MAX_PIECES: usize = 64;
/// Where ranks share cores, or where the receiver may not read the sender's memory, lent
/// messages whose payload (beyond the part in the frame) has at least this many bytes, or does
/// not fit in the pipe, are read out of the sender's memory (`process_vm_readv`, Open MPI's
/// and MPICH's cross-memory attach) rather than lent through the pipe (where ranks have a core
/// each, see [`UNCROWDED_MEMORY_MIN`]).
///
/// Measured on 2 cores: 16 MiB took 1.6 ms so, against 3.5-4.2 ms through a socket and 2.8-4.6
/// ms streamed through a 1 MiB pipe (bench/floor.c, 2 processes); in `collbench` at 2 ranks,
/// alternating runs, medians of seven, 1 MiB: ping-pong 92 against 116 us through the pipe,
/// broadcast 83 against 96, gather 144 against 161, allgather 185 against 205; 64 KiB rows
/// within the noise either way (some 10% better, some 10% worse).
pub(crate) const MEMORY_MIN: usize = 1 << 20;
/// Where the host has a core for each of its ranks and the receiver may read the sender's
/// memory, the shortest lent message read out of it rather than lent through the pipe: every
/// one ([`LEND_MIN`]).
///
/// A page lent through a pipe is counted twice, by the sender as it lends it (`vmsplice`) and
/// by the receiver as it lets it go after its copy, each on its own core, so each page's count
/// moves between the cores' caches (the receiver's release took a third as long as its copy
/// in a 2-rank 64 KiB allgather); a read out of memory pins and releases the pages on the
/// receiver's core alone. Measured at 2 ranks, medians of eight alternating runs, every lent
/// message in memory against from 1 MiB: 64 KiB ping-pong 7.89 against 8.59 us, broadcast
/// 8.29 against 9.22, gather 9.03 against 9.82, scatter 8.18 against 9.53, allgather 17.7
/// against 18.5, allreduce even (Open MPI: 3.6, 3.3, 4.6, 4.6, 5.3 and 16.9 us); 1 MiB rows
/// within the noise. Where ranks share cores the pipe stays below [`MEMORY_MIN`]: at 8 ranks
/// on 2 cores, five alternating runs, the 64 KiB broadcast took 18.4 against 15.6 us in
/// memory, the scatter 17.0 against 15.5, the other rows even.
pub(crate) const UNCROWDED_MEMORY_MIN: usize = LEND_MIN;
/// The pipe descriptor a lent message's frame names when its payload is to be read out of the
/// sender's memory ([`MEMORY_MIN`]) instead.
const IN_MEMORY: i32 = -1;
/// Bytes of a lent message's frame after its header: the sender's process id, its pipe's
/// descriptor (or [`IN_MEMORY`]), the length of the last piece (in the frame), the number of
/// pieces in memory, and flags ([`HELPS`], [`RENDEZVOUS`]).
const FIXED: usize = 20;
/// A lent message's flag: its sender waits for the answer at once (not receiving meanwhile),
/// and so can copy part of a payload in memory itself when the receiver asks ([`WRITE`]).
const HELPS: u32 = 1;
/// Where a lent message's flags word holds, from this bit on, the CPU its sender is bound to
/// plus one (0: not bound, or unknown), for a sender that helps ([`HELPS`]): a receive on
/// that CPU does not share the copy with it (the two would only take turns), and one on
/// another CPU shares it and spins for its answer ([`SHARE_SPIN`]).
const CPU_SHIFT: u32 = 16;
/// The largest value of the flags' CPU field ([`CPU_SHIFT`]).
const CPU_MAX: u32 = (1 << (32 - CPU_SHIFT)) - 1;
/// How long, where ranks share cores, a receive sharing a copy ([`SHARE_MIN`]) with a sender
/// bound to another CPU, and that sender, poll for each other's answer without giving their
/// cores to other ranks between polls (then as [`crate::env::YIELD_US`] says): the answer comes
/// as soon as the other's half is copied, at the same time on the other core, where yielding
/// lets the ranks queued on the core go first (each one woken for a barrier takes some 12 us).
/// Measured at 8 ranks on 2 cores, bound, 1 MiB ping-pong, medians of six alternating runs: 65.0
/// against 76.3 us (Open MPI 83.7); 25, 50 and 100 us measured alike. Unbound, at 16 ranks, a
/// sender's CPU says little (134 against 116 us spinning whenever they differed): only bound.
const SHARE_SPIN: std::time::Duration = std::time::Duration::from_micros(50);
/// A lent message's flag, where ranks share cores: its receiver is sure to post its receive
/// (one step of an exchange, whose sender receives while it waits, or one message of a fan,
/// whose receivers are in the same collective call), so it may leave the message unread until
/// then ([`rendezvous`]) rather than copy it into a vector first. Such a message goes through
/// the pipe when it fits, like any other: at 8 ranks on 2 cores, alternating runs, the 1 MiB
/// allreduce (exchanges of 128 to 512 KiB) took 874 against 1174 us read out of memory (Open
/// MPI 880), 928 against 1223 in another set; the pipe's reader copies pages the sender pinned
/// with `vmsplice`, where `process_vm_readv` walks the sender's page tables under their locks.
const RENDEZVOUS: u32 = 2;
/// Least number of bytes a receive shares the copy of with the sender of a message lent in
/// memory: it reads the first half and the sender writes the second into its buffer
/// (`process_vm_writev`), each on its own core, where ranks have a core each. Measured at 2
/// ranks on 2 cores, four alternating runs, 1 MiB shared against read whole: ping-pong 41.6
/// against 68.2 us (Open MPI 52.8), broadcast 29.5 against 65.5, gather 88.7 against 144.1.
pub(crate) const SHARE_MIN: usize = 512 * 1024;
/// The receiver's answer: the payload was read from the pipe (or memory).
pub(crate) const READ: u8 = 1;
/// The receiver's answer: it could not read the pipe; the sender writes the payload.
const SEND: u8 = 2;
/// The receiver's request, with the address of a part of its buffer and the offset and length
/// of the payload's bytes that belong there: the sender is to write them there itself.
const WRITE: u8 = 3;
/// The sender's answer to [`WRITE`]: the bytes are written.
const WRITTEN: u8 = 4;
/// The sender's answer to [`WRITE`]: it could not write them (the receiver copies them).
const UNWRITTEN: u8 = 5;
/// The receiver's answer: it could not read the sender's memory for want of the permission,
/// taken away since the connection was made ([`unreadable`]), and closes the connection; the
/// sender's send fails saying so. (Not [`SEND`]: two ranks exchanging messages would each
/// wait for the other's payload, written only once its own receive ends.)
const UNREADABLE: u8 = 6;

/// A sender's pipe to one receiver.
pub(crate) struct Pipe {
    /// The end the receiver opens (through `/proc`); the sender only keeps it open.
    read: OwnedFd,
    write: OwnedFd,
    /// How many bytes it holds, in slots of a page (a piece that starts mid-page takes one
    /// more).
    capacity: usize,
    page: usize,
    /// Whether the receiver has read a message through it, and so holds it open: until then it
    /// may refuse one ([`crate::engine::Engine::lend_while`] lends that one on its own).
    pub proven: bool,
}

impl Pipe {
    /// A new pipe of up to `size` bytes (see [`pipe_size`]): less when the kernel refuses
    /// (above `/proc/sys/fs/pipe-max-size`, 1 MiB by default, for users without
    /// `CAP_SYS_RESOURCE`, or over the user's quota after all), and then longer messages are
    /// read out of the sender's memory instead.
    pub fn new(size: usize) -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let mut ask = size;
        while fcntl(&write, FcntlArg::F_SETPIPE_SZ(i32::try_from(ask).unwrap_or(i32::MAX))).is_err()
            && ask > LEND_MIN
        {
            ask /= 2;
        }
        let capacity = usize::try_from(fcntl(&write, FcntlArg::F_GETPIPE_SZ)?).unwrap_or(0);
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096);
        Ok(Pipe { read, write, capacity, page: usize::try_from(page).unwrap_or(4096), proven: false })
    }

    /// Whether a message in `parts` can be lent: it lies in few enough pieces (one that fits
    /// in the pipe goes through it, a longer one is read out of the sender's memory).
    pub fn takes(&self, parts: &[&[u8]]) -> bool {
        split_inline(parts).0.len() <= MAX_PIECES
    }

    /// Whether a message in `parts` goes through the pipe (it fits whole, its last part
    /// perhaps in the frame, and is shorter than `memory_from`, [`MEMORY_MIN`] or
    /// [`UNCROWDED_MEMORY_MIN`]) rather than being read out of the sender's memory.
    pub fn holds(&self, parts: &[&[u8]], memory_from: usize) -> bool {
        let piped = split_inline(parts).0;
        let len: usize = piped.iter().map(|p| p.len()).sum();
        self.fits(piped) && len < memory_from
    }

    /// Whether `pieces` fit whole: the pipe takes one page (or part of one) per slot.
    fn fits(&self, pieces: &[&[u8]]) -> bool {
        let pages = |p: &&[u8]| (p.as_ptr() as usize % self.page + p.len()).div_ceil(self.page);
        pieces.iter().map(pages).sum::<usize>() * self.page <= self.capacity
    }
}

/// The size of each lending pipe when `local` ranks share a host, or `None` when they are too
/// many for pipes to lend through ([`MEMORY_ONLY_PIPE`] then): up to [`LEND_MAX`], and all of
/// the host's pipes (one per pair of ranks) within half the pages the kernel lets one user's
/// pipes take (`/proc/sys/fs/pipe-user-pages-soft`; past it, every new pipe of the user's, this
/// job's or any other program's, gets two pages).
pub(crate) fn pipe_size(local: usize) -> Option<usize> {
    let pages: usize = std::fs::read_to_string("/proc/sys/fs/pipe-user-pages-soft")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(16384);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096);
    let pairs = local.saturating_mul(local.saturating_sub(1)).max(1);
    let share = if pages == 0 { LEND_MAX } else { pages.saturating_mul(page as usize) / 2 / pairs };
    // a power of two, as the kernel rounds to one anyway
    let size = match share.min(LEND_MAX) {
        0 => 0,
        s => 1 << s.ilog2(),
    };
    (size >= 2 * LEND_MIN).then_some(size)
}

/// A lent message as its receiver sees it: the pipe it comes through, and what is left of it.
pub(crate) struct Lent {
    /// Where the payload comes from: the pipe (`None` when it could not be opened), or the
    /// sender's memory.
    source: Source,
    /// How many of the payload's bytes are still to come out of the pipe or the sender's
    /// memory.
    piped: usize,
    /// The payload's last bytes, which came in the frame, and how many of them are taken.
    tail: Vec<u8>,
    tail_taken: usize,
    /// Whether the message may wait for its receive ([`RENDEZVOUS`]).
    rendezvous: bool,
}

/// Where a lent payload comes from.
enum Source {
    /// The sender's pipe; `None` when it could not be opened.
    Pipe(Option<Arc<File>>),
    /// The sender's memory, read across processes; `None` when this process may not read it.
    Memory(Option<Box<Remote>>),
}

/// A payload in another process's memory.
struct Remote {
    /// The process, its buffers, and how many of their bytes are read.
    pid: Pid,
    pieces: Vec<RemoteIoVec>,
    at: usize,
    /// Whether the sender writes part of the payload when asked ([`HELPS`]).
    helped: bool,
    /// The CPU the sender is bound to (and ran on as it announced the message), if it said.
    cpu: Option<usize>,
}

/// What a connection's receiver knows of its sender: the pipe the sender lends through, once
/// opened, so that it is opened once; and, from the [`Access`] found when the connection was
/// accepted, the process at the other end (a connected socket's peer does not change) and
/// whether this process may read its memory.
pub(crate) struct Opened {
    pipe: Mutex<Option<(Owner, Arc<File>)>>,
    peer: Option<i32>,
    memory: bool,
}

impl Opened {
    /// For a connection whose sender this process can take `access` from.
    pub fn new(access: Access) -> Opened {
        let peer = i32::try_from(access.pid).ok().filter(|&p| p > 0);
        Opened { pipe: Mutex::new(None), peer, memory: access.memory }
    }
}

/// What a receiver can take from the sender at the other end of a connection: whether it can
/// open the sender's pipes and read its memory, and which process it sees there. The receiver
/// finds it out as it accepts the connection ([`Access::of_peer`]), keeps it for the
/// connection's lent messages ([`Opened::new`]) and tells the sender before the sender's first
/// message ([`Access::encode`]), which then lends only the ways that work.
/// Finding out at the first lent message instead, as before, left two ranks exchanging lent
/// messages where reading another process's memory is forbidden (Yama's `ptrace_scope` 1, the
/// default on Ubuntu, or a container's seccomp profile) each waiting for the other's payload,
/// which each writes only once its own receive ends: a hang.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Access {
    /// The receiver can open the sender's pipes (`/proc/PID/fd/N`).
    pub pipes: bool,
    /// The receiver can read the sender's memory (`process_vm_readv`).
    pub memory: bool,
    /// The sender's process id as the receiver sees it (0 for none, as over TCP).
    pub pid: u32,
}

impl Access {
    /// Length of [`Access::encode`]'s bytes.
    pub const LEN: usize = 5;
    /// Nothing: the peer is on another host, or out of reach.
    pub const NONE: Access = Access { pipes: false, memory: false, pid: 0 };

    /// What this process can take from the process at the other end of `stream`.
    pub fn of_peer(stream: &dyn Stream) -> Access {
        let Some(pid) = stream.peer_pid().filter(|&p| p > 0) else { return Access::NONE };
        let memory = reads_memory_of_pid(pid);
        let pipes = std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok();
        Access { pipes, memory, pid: pid as u32 }
    }

    /// The bytes that tell the sender: one of flags, then the process id.
    pub fn encode(self) -> [u8; Access::LEN] {
        let flags = u8::from(self.pipes) | (u8::from(self.memory) << 1);
        let pid = self.pid.to_le_bytes();
        [flags, pid[0], pid[1], pid[2], pid[3]]
    }

    /// What the sender makes of [`Access::encode`]'s bytes: nothing is lent to a receiver that
    /// sees another process than this one (another pid namespace: it would refuse every lent
    /// message, its frame naming this process by the id this process knows).
    pub fn decode(raw: [u8; Access::LEN]) -> Access {
        let pid = u32::from_le_bytes([raw[1], raw[2], raw[3], raw[4]]);
        if pid != this_process() {
            return Access::NONE;
        }
        Access { pipes: raw[0] & 1 != 0, memory: raw[0] & 2 != 0, pid }
    }
}

/// Whose a pipe is: the sender's process id and the pipe's descriptor there.
type Owner = (i32, i32);

/// The parts of a lent message that go through the pipe, and the last one when it goes in
/// the frame instead.
fn split_inline<'p, 'a>(parts: &'p [&'a [u8]]) -> (&'p [&'a [u8]], &'a [u8]) {
    match parts {
        [piped @ .., last] if !piped.is_empty() && last.len() <= INLINE_MAX => (piped, last),
        _ => (parts, &[]),
    }
}

/// The first half of lending `parts` ([`LEND_MIN`] bytes or more in all, in at most
/// [`MAX_PIECES`] pieces besides a last one of up to [`INLINE_MAX`] bytes) to the receiver at
/// the other end of `stream`: puts them into the pipe when it holds them ([`Pipe::holds`]), and
/// writes the frame that announces them there, or else the frame that tells where they lie in
/// this process's memory (when the pipe does not [`hold`](Pipe::holds) them with
/// `memory_from`). Returns how far it got; [`finish`] does the rest, and the pipe must not be
/// used again, nor `parts` changed, until it did.
#[allow(clippy::too_many_arguments)]
pub(crate) fn announce(
    stream: &mut dyn Stream,
    pipe: &Pipe,
    memory_from: usize,
    context: u64,
    tag: u32,
    parts: &[&[u8]],
    helps: bool,
    rendezvous: bool,
) -> io::Result<Announced> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let (piped, inline) = split_inline(parts);
    if piped.len() > MAX_PIECES {
        return Err(io::Error::other("a lent message in too many pieces"));
    }
    let header = Header { kind: KIND_LEND, context, tag, len: len as u64 };
    let mut frame = Vec::with_capacity(HEADER_LEN + FIXED + 16 * piped.len() + inline.len());
    frame.extend_from_slice(&header.encode());
    // from `memory_from`, or too long for the pipe: the receiver reads it out of this
    // process's memory
    let in_memory = !pipe.holds(parts, memory_from);
    let (source, pieces) = if in_memory { (IN_MEMORY, piped) } else { (pipe.read.as_raw_fd(), &[][..]) };
    let flags = if helps && !rendezvous { HELPS | bound_cpu() << CPU_SHIFT } else { 0 }
        | if rendezvous { RENDEZVOUS } else { 0 };
    // the fixed part (process, pipe or memory, length of the last piece, pieces in memory,
    // flags), then the pieces, then the last piece
    for word in [this_process(), source as u32, inline.len() as u32, pieces.len() as u32, flags] {
        frame.extend_from_slice(&word.to_le_bytes());
    }
    for p in pieces {
        frame.extend_from_slice(&(p.as_ptr() as u64).to_le_bytes());
        frame.extend_from_slice(&(p.len() as u64).to_le_bytes());
    }
    let spliced = if in_memory {
        len - inline.len()
    } else {
        // the pipe is empty: every message before was read whole
        splice(pipe, piped, 0)?
    };
    frame.extend_from_slice(inline);
    stream.write_all(&frame)?;
    stream.flush()?;
    Ok(Announced { spliced, complete: spliced == len - inline.len() })
}

/// The CPU this thread runs on, plus one, for a lent message's frame ([`CPU_SHIFT`]), where the
/// rank is bound to it ([`crate::affinity::bound`]); 0 where it is not (it may run elsewhere
/// by the time the receiver looks) or the number does not fit.
fn bound_cpu() -> u32 {
    if !crate::affinity::bound() {
        return 0;
    }
    u32::try_from(rustix::thread::sched_getcpu() + 1).ok().filter(|&c| c <= CPU_MAX).unwrap_or(0)
}

/// This process's id, asked of the system once (every lent message's frame names it).
fn this_process() -> u32 {
    static ID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *ID.get_or_init(std::process::id)
}

/// How far [`announce`] got.
pub(crate) struct Announced {
    /// Bytes in the pipe.
    spliced: usize,
    /// Whether the whole message is in the pipe and the frame, so that its receiver needs
    /// nothing more from the sender.
    pub complete: bool,
}

/// Puts `parts` from byte `from` on into the pipe, as much as it takes without waiting;
/// returns how far it got.
fn splice(pipe: &Pipe, parts: &[&[u8]], from: usize) -> io::Result<usize> {
    let mut slices = slices(parts, from, usize::MAX);
    let mut pages = &mut slices[..];
    let mut done = from;
    while !pages.is_empty() {
        match vmsplice(&pipe.write, pages, SpliceFFlags::SPLICE_F_NONBLOCK) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                IoSlice::advance_slices(&mut pages, n);
                done += n;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// The second half of lending, after [`announce`]: the rest into the pipe as the receiver
/// makes room, then its answer (polled as `polling` says); writes `parts` on `stream` when the
/// receiver cannot read them, and the part of a payload in memory the receiver asks for into
/// its buffer ([`WRITE`]) before its last answer. Returns whether it read them; after `false`
/// or an error, the pipe may still hold some of them and must not be used again.
pub(crate) fn finish(
    stream: &mut dyn Stream,
    polling: crate::mailbox::Polling,
    pipe: &Pipe,
    parts: &[&[u8]],
    announced: Announced,
) -> io::Result<bool> {
    let mut spliced = announced.spliced;
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let (piped, inline) = split_inline(parts);
    while spliced < len - inline.len() {
        // room in the pipe, or the receiver's answer, should it refuse the pipe
        let mut fds = [
            PollFd::new(pipe.write.as_fd(), PollFlags::POLLOUT),
            PollFd::new(stream.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        if fds[1].any() != Some(false) {
            break;
        }
        spliced = splice(pipe, piped, spliced)?;
    }
    let mut answer = [0u8];
    let mut wrote = false;
    loop {
        // at every size: the receiver copies 1 MiB in 30 to 60 us, within the spin where ranks
        // have a core each (with the spin at 200 us: 1 MiB ping-pong 81 us, against 139 polling
        // 50 us and only up to 256 KiB)
        // after a part of the copy (the receiver, bound elsewhere, copies the other part
        // meanwhile: it shares only with a sender on another CPU), its answer comes soon
        wait_for_answer(stream, polling, wrote && crate::affinity::bound());
        stream.read_exact(&mut answer)?;
        match answer[0] {
            READ if spliced == len - inline.len() => return Ok(true),
            SEND => {
                for p in parts {
                    stream.write_all(p)?;
                }
                stream.flush()?;
                return Ok(false);
            }
            WRITE => {
                let mut raw = [0u8; 24];
                stream.read_exact(&mut raw)?;
                let word = |i: usize| u64::from_le_bytes(raw[8 * i..8 * i + 8].try_into().unwrap_or([0; 8]));
                let (base, from, n) = (word(0) as usize, word(1) as usize, word(2) as usize);
                if from.checked_add(n).is_none_or(|end| end > len - inline.len()) {
                    return Err(io::Error::other(format!("a request to write {n} bytes from byte {from}")));
                }
                let written = stream.peer_pid().is_some_and(|pid| {
                    let local = slices(piped, from, n);
                    let remote = [RemoteIoVec { base, len: n }];
                    process_vm_writev(Pid::from_raw(pid), &local, &remote) == Ok(n)
                });
                stream.write_all(&[if written { WRITTEN } else { UNWRITTEN }])?;
                stream.flush()?;
                wrote = true;
            }
            UNREADABLE => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("the receiver cannot read this rank's memory any more{AFTER_START}"),
                ));
            }
            other => return Err(io::Error::other(format!("answer {other} to a lent message"))),
        }
    }
}

/// Where the `n` bytes from byte `from` on lie in a sequence of buffers of lengths `lens`
/// (fewer when they end sooner): for each buffer they touch, its index, the offset in it and
/// the length.
fn spans(lens: impl IntoIterator<Item = usize>, from: usize, n: usize) -> Vec<(usize, usize, usize)> {
    let (mut skip, mut want, mut out) = (from, n, Vec::new());
    for (i, len) in lens.into_iter().enumerate() {
        if want == 0 {
            break;
        }
        if skip >= len {
            skip -= len;
            continue;
        }
        let take = (len - skip).min(want);
        out.push((i, skip, take));
        (skip, want) = (0, want - take);
    }
    out
}

/// The `n` bytes of `parts` from byte `from` on (fewer when `parts` end sooner).
fn slices<'a>(parts: &[&'a [u8]], from: usize, n: usize) -> Vec<IoSlice<'a>> {
    let lens = parts.iter().map(|p| p.len());
    spans(lens, from, n).into_iter().map(|(i, at, len)| IoSlice::new(&parts[i][at..at + len])).collect()
}

/// Reads the description that follows a [`KIND_LEND`] header and finds the pipe it names,
/// opening it unless `opened` holds it already; a pipe that cannot be opened (or that is not
/// the socket's peer's) gives a [`Lent`] that [`receive`] refuses.
pub(crate) fn read(stream: &mut dyn Stream, header: &Header, opened: &Opened) -> io::Result<Lent> {
    // the fixed part, then the pieces in memory and the last bytes at once (two reads)
    let mut raw = [0u8; FIXED];
    stream.read_exact(&mut raw)?;
    let word = |i: usize| u32::from_le_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
    let owner = (word(0) as i32, word(4) as i32);
    let (inline, count, flags) = (word(8) as usize, word(12) as usize, word(16));
    if inline > INLINE_MAX || inline as u64 > header.len {
        return Err(io::Error::other(format!("a lent message with {inline} bytes in its frame")));
    }
    let (cpu, flags) = (flags >> CPU_SHIFT, flags & ((1 << CPU_SHIFT) - 1));
    if flags & !(HELPS | RENDEZVOUS) != 0 || (owner.1 < 0 && owner.1 != IN_MEMORY) {
        return Err(io::Error::other(format!(
            "a lent message naming source {} with flags {flags:#x}",
            owner.1
        )));
    }
    let in_memory = owner.1 == IN_MEMORY;
    let rendezvous = flags & RENDEZVOUS != 0;
    if count > MAX_PIECES || (count > 0 && !in_memory) {
        return Err(io::Error::other(format!("a message lent in {count} pieces of memory")));
    }
    // `header.len` passed the limit check, so it is a length this process may allocate
    let piped = usize::try_from(header.len).map_err(io::Error::other)? - inline;
    let mut rest = vec![0u8; 16 * count + inline];
    stream.read_exact(&mut rest)?;
    let tail = rest.split_off(16 * count);
    if in_memory {
        let remote = pieces(&rest, piped)?;
        let source = (opened.peer == Some(owner.0) && opened.memory).then(|| {
            let (pid, helped) = (Pid::from_raw(owner.0), flags & HELPS != 0);
            let cpu = usize::try_from(cpu).ok().and_then(|c| c.checked_sub(1));
            Box::new(Remote { pid, pieces: remote, at: 0, helped, cpu })
        });
        return Ok(Lent { source: Source::Memory(source), piped, tail, tail_taken: 0, rendezvous });
    }
    let mut cached = opened.pipe.lock().unwrap_or_else(PoisonError::into_inner);
    let pipe = match cached.as_ref().filter(|(o, _)| *o == owner) {
        Some((_, pipe)) => Some(Arc::clone(pipe)),
        None => {
            let pipe = (opened.peer == Some(owner.0))
                .then(|| File::open(format!("/proc/{}/fd/{}", owner.0, owner.1)).ok())
                .flatten()
                .filter(|f| {
                    use std::os::unix::fs::FileTypeExt;
                    f.metadata().is_ok_and(|m| m.file_type().is_fifo())
                })
                .map(Arc::new);
            if let Some(p) = &pipe {
                *cached = Some((owner, Arc::clone(p)));
            }
            pipe
        }
    };
    Ok(Lent { source: Source::Pipe(pipe), piped, tail, tail_taken: 0, rendezvous })
}

/// The buffers a message lent in memory lies in, as its frame lists them (`raw`: an address
/// and a length of 8 bytes each per buffer), which must add up to `piped` bytes.
fn pieces(raw: &[u8], piped: usize) -> io::Result<Vec<RemoteIoVec>> {
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    let remote: Vec<RemoteIoVec> = raw
        .chunks_exact(16)
        .map(|c| RemoteIoVec { base: word(&c[..8]) as usize, len: word(&c[8..]) as usize })
        .collect();
    let total = remote.iter().try_fold(0usize, |sum, r| sum.checked_add(r.len));
    if total != Some(piped) {
        return Err(io::Error::other(format!("a message of {piped} bytes lent in memory of {total:?}")));
    }
    Ok(remote)
}

/// Whether a lent message may stay unread until a receive is posted for it: its sender said so
/// ([`RENDEZVOUS`]), and its payload can be read (else it is refused at once and
/// written).
pub(crate) fn rendezvous(lent: &Lent) -> bool {
    lent.rendezvous && readable(lent)
}

/// The payload's last bytes, which came in the frame (a collective's signature).
pub(crate) fn tail(lent: &Lent) -> &[u8] {
    &lent.tail
}

/// Whether the lent payload can be read (else the sender is asked to write it).
pub(crate) fn readable(lent: &Lent) -> bool {
    match &lent.source {
        Source::Pipe(pipe) => pipe.is_some(),
        Source::Memory(source) => source.is_some(),
    }
}

/// Whether this process can read the memory of the process at the other end of `stream` (by
/// cross-memory attach), as [`Access::of_peer`] finds.
pub(crate) fn reads_memory_of(stream: &dyn Stream) -> bool {
    stream.peer_pid().filter(|&p| p > 0).is_some_and(reads_memory_of_pid)
}

/// Whether this process can read process `pid`'s memory: the kernel checks the permission
/// before the address, so reading at address 0 fails for want of memory there (`EFAULT`) only
/// where reading is allowed.
fn reads_memory_of_pid(pid: i32) -> bool {
    let mut byte = [0u8];
    let probe = [RemoteIoVec { base: 0, len: 1 }];
    let read = process_vm_readv(Pid::from_raw(pid), &mut [IoSliceMut::new(&mut byte)], &probe);
    matches!(read, Ok(_) | Err(nix::errno::Errno::EFAULT))
}

/// Copies `into.len()` bytes of a payload lent in memory, from byte `at` on, out of the buffers
/// `remote` of process `pid`; the error says why it could not ([`unreadable`]).
fn read_memory(pid: Pid, remote: &[RemoteIoVec], at: usize, into: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < into.len() {
        // the remote pieces from byte `at + done` on, as far as `into` reaches
        let pieces: Vec<RemoteIoVec> = spans(remote.iter().map(|r| r.len), at + done, into.len() - done)
            .into_iter()
            .map(|(i, skip, len)| RemoteIoVec { base: remote[i].base + skip, len })
            .collect();
        match process_vm_readv(pid, &mut [IoSliceMut::new(&mut into[done..])], &pieces) {
            Ok(0) => return Err(unreadable(pid, io::ErrorKind::UnexpectedEof.into())),
            Err(errno) => return Err(unreadable(pid, errno.into())),
            Ok(n) => done += n,
        }
    }
    Ok(())
}

/// The error of a read of process `pid`'s memory that failed with `cause`, of `cause`'s kind:
/// [`io::ErrorKind::PermissionDenied`] where the permission checked as the receiver accepted
/// the connection ([`Access`]) was taken away since.
fn unreadable(pid: Pid, cause: io::Error) -> io::Error {
    let why = if cause.kind() == io::ErrorKind::PermissionDenied { AFTER_START } else { "" };
    io::Error::new(cause.kind(), format!("cannot read the sender's memory (process {pid}): {cause}{why}"))
}

/// What a read of memory refused after the connection was made means, and what to do.
const AFTER_START: &str = "; the permission to read another process's memory, which the \
    receiver had when the job started, was taken away (the sender made itself undumpable or \
    changed its user, the receiver changed its user or dropped CAP_SYS_PTRACE, or a security \
    module forbids it now); PRUN_SINGLE_COPY=0 sends large messages through the sockets instead";

/// Tells the sender at the other end of `stream`, if `e` is a refused read of its memory
/// ([`unreadable`]), that its payload cannot be read ([`UNREADABLE`]); the caller then closes
/// the connection. Best effort: the connection is given up either way.
pub(crate) fn give_up(stream: &mut dyn Stream, e: &io::Error) {
    if e.kind() == io::ErrorKind::PermissionDenied {
        let _ = stream.write_all(&[UNREADABLE]).and_then(|()| stream.flush());
    }
}

/// Copies the next bytes of a lent payload into `into`, out of its pipe or the sender's memory,
/// then from the bytes that came in the frame; fails when the pipe or the memory cannot be
/// read (the sender died, or the permission to read its memory was taken away), or `into` is
/// longer than what is left.
pub(crate) fn pull(lent: &mut Lent, into: &mut [&mut [u8]]) -> io::Result<()> {
    for b in into.iter_mut() {
        let (front, back) = b.split_at_mut(b.len().min(lent.piped));
        if !front.is_empty() {
            match &mut lent.source {
                Source::Pipe(Some(pipe)) => (&**pipe).read_exact(front).map_err(|e| {
                    io::Error::new(e.kind(), format!("the sender's pipe failed mid-message: {e}"))
                })?,
                Source::Memory(Some(remote)) => {
                    read_memory(remote.pid, &remote.pieces, remote.at, front)?;
                    remote.at += front.len();
                }
                _ => return Err(io::Error::other("a lent payload read from where it cannot be")),
            }
            lent.piped -= front.len();
        }
        let Some(tail) = lent.tail.get(lent.tail_taken..lent.tail_taken + back.len()) else {
            return Err(io::Error::other("a lent payload shorter than its receive"));
        };
        back.copy_from_slice(tail);
        lent.tail_taken += back.len();
    }
    Ok(())
}

/// Finishes receiving a lent payload into `into` (whose lengths add up to the payload's): its
/// first bytes are `prefix` (read before), the rest comes out of the pipe, and the sender is
/// told; if the pipe cannot be read, the sender is asked for the bytes and the whole payload is
/// read from `stream` instead. A wait for the sender's part of a shared copy polls as
/// `polling` says first.
pub(crate) fn receive(
    stream: &mut dyn Stream,
    polling: crate::mailbox::Polling,
    lent: &mut Lent,
    prefix: &[u8],
    into: &mut [&mut [u8]],
) -> io::Result<()> {
    let total: usize = into.iter().map(|b| b.len()).sum();
    if prefix.len() > total {
        return Err(io::Error::other("a payload longer than its receive"));
    }
    if !readable(lent) {
        refuse(stream)?;
        for b in into.iter_mut() {
            stream.read_exact(b)?;
        }
        return Ok(());
    }
    if prefix.is_empty() && share(stream, polling, lent, into).inspect_err(|e| give_up(stream, e))? {
        return accept(stream);
    }
    // the prefix into the front of `into`, and the rest out of the pipe
    let mut rest: Vec<&mut [u8]> = Vec::with_capacity(into.len());
    let mut copied = 0;
    for b in into.iter_mut() {
        let n = (prefix.len() - copied).min(b.len());
        b[..n].copy_from_slice(&prefix[copied..copied + n]);
        copied += n;
        rest.push(&mut b[n..]);
    }
    pull(lent, &mut rest).inspect_err(|e| give_up(stream, e))?;
    accept(stream)
}

/// Receives a payload lent in memory by a sender that helps ([`HELPS`]) and of at
/// least twice [`SHARE_MIN`] bytes in `into`'s first buffer, none of it read yet: asks the
/// sender to write the second half of that buffer ([`WRITE`]) while it reads the first, then
/// the rest, polling for the sender's answer as `polling` says. Returns whether it did (else
/// nothing happened).
fn share(
    stream: &mut dyn Stream,
    polling: crate::mailbox::Polling,
    lent: &mut Lent,
    into: &mut [&mut [u8]],
) -> io::Result<bool> {
    let Source::Memory(Some(remote)) = &mut lent.source else { return Ok(false) };
    let Some((first, others)) = into.split_first_mut() else { return Ok(false) };
    let whole = first.len().min(lent.piped);
    // with a sender bound to this thread's CPU the two would only take turns: no sharing
    if !remote.helped
        || remote.at != 0
        || whole < 2 * SHARE_MIN
        || remote.cpu.is_some_and(|c| c == rustix::thread::sched_getcpu())
    {
        return Ok(false);
    }
    let half = whole / 2;
    let (mine, theirs) = first[..whole].split_at_mut(half);
    let mut request = Vec::with_capacity(25);
    request.push(WRITE);
    for word in [theirs.as_ptr() as u64, half as u64, theirs.len() as u64] {
        request.extend_from_slice(&word.to_le_bytes());
    }
    stream.write_all(&request)?;
    stream.flush()?;
    // the sender writes `theirs` meanwhile: this thread does not touch it until it answers
    let read = read_memory(remote.pid, &remote.pieces, 0, mine);
    // the sender copies as much at the same time: its answer comes about now, and sleeping
    // for it costs a wake-up (2 ranks on 2 cores, 1 MiB ping-pong: 81 us sleeping at once,
    // 67 with the receiver reading it all, 42 polling)
    let mut answer = [0u8];
    wait_for_answer(stream, polling, remote.cpu.is_some());
    stream.read_exact(&mut answer)?;
    read?;
    match answer[0] {
        WRITTEN => {}
        UNWRITTEN => read_memory(remote.pid, &remote.pieces, half, theirs)?,
        other => return Err(io::Error::other(format!("answer {other} to a request to write"))),
    }
    remote.at = whole;
    lent.piped -= whole;
    let mut rest: Vec<&mut [u8]> = Vec::with_capacity(1 + others.len());
    rest.push(&mut first[whole..]);
    rest.extend(others.iter_mut().map(|b| &mut **b));
    pull(lent, &mut rest)?;
    Ok(true)
}

/// Waits for the next byte on `stream` as `polling` says; first, where `polling` yields (ranks
/// share cores) and `spin`, for up to [`SHARE_SPIN`] without yielding.
fn wait_for_answer(stream: &dyn Stream, polling: crate::mailbox::Polling, spin: bool) {
    let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
    if spin && polling.yields {
        let first = crate::mailbox::Polling::spin(SHARE_SPIN);
        if crate::mailbox::poll_then_sleep(&mut fds, first, Some(std::time::Instant::now()))
            .is_ok_and(|n| n > 0)
        {
            return;
        }
    }
    if !polling.time.is_zero() {
        let _ = crate::mailbox::poll_then_sleep(&mut fds, polling, None);
    }
}

/// Tells the sender at the other end of `stream` that its lent payload could not be read, so
/// that it writes it.
pub(crate) fn refuse(stream: &mut dyn Stream) -> io::Result<()> {
    stream.write_all(&[SEND])?;
    stream.flush()
}

/// Tells the sender at the other end of `stream` that its lent payload was read.
pub(crate) fn accept(stream: &mut dyn Stream) -> io::Result<()> {
    stream.write_all(&[READ])?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::Polling;
    use crate::wire::read_header;
    use rustix::thread::CpuSet;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    /// What a receive on `stream` knows of its sender, as for an accepted connection.
    fn opened_for(stream: &UnixStream) -> Opened {
        Opened::new(Access::of_peer(stream))
    }

    /// Whether this process may read its own memory by cross-memory attach (a container's
    /// seccomp profile may forbid `process_vm_readv` altogether).
    fn cross_memory() -> bool {
        let (mut into, from) = ([0u8], [7u8]);
        let remote = [RemoteIoVec { base: from.as_ptr() as usize, len: 1 }];
        process_vm_readv(Pid::this(), &mut [IoSliceMut::new(&mut into)], &remote) == Ok(1) && into == from
    }

    /// Lends `parts` whole: [`announce`], then [`finish`].
    fn send(
        stream: &mut dyn Stream,
        polling: Polling,
        pipe: &Pipe,
        context: u64,
        tag: u32,
        parts: &[&[u8]],
    ) -> io::Result<bool> {
        let announced = announce(stream, pipe, MEMORY_MIN, context, tag, parts, true, false)?;
        finish(stream, polling, pipe, parts, announced)
    }

    /// One end lends, the other receives; returns what arrived and whether it was read from
    /// the pipe. `forge` changes the frame's process id.
    fn exchange(payload: &[&[u8]], forge: Option<u32>) -> (Vec<u8>, bool) {
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        let pipe = Pipe::new(LEND_MAX).expect("pipe");
        std::thread::scope(|s| {
            let sender = s.spawn(|| match forge {
                // a frame by hand, naming another process's pipe
                Some(pid) => {
                    let len: usize = payload.iter().map(|p| p.len()).sum();
                    let h = Header { kind: KIND_LEND, context: 7, tag: 3, len: len as u64 };
                    let mut f = h.encode().to_vec();
                    f.extend_from_slice(&pid.to_le_bytes());
                    f.extend_from_slice(&0i32.to_le_bytes());
                    // nothing inline, no pieces in memory, no flags
                    f.extend_from_slice(&0u32.to_le_bytes());
                    f.extend_from_slice(&0u32.to_le_bytes());
                    f.extend_from_slice(&0u32.to_le_bytes());
                    a.write_all(&f).expect("write");
                    let mut answer = [0u8];
                    a.read_exact(&mut answer).expect("answer");
                    assert_eq!(answer[0], SEND);
                    payload.iter().for_each(|p| a.write_all(p).expect("bytes"));
                    false
                }
                None => send(&mut a, Polling::default(), &pipe, 7, 3, payload).expect("send"),
            });
            let header = read_header(&mut b, u64::MAX).expect("header").expect("a frame");
            assert_eq!((header.kind, header.context, header.tag), (KIND_LEND, 7, 3));
            let opened = opened_for(&b);
            let mut lent = read(&mut b, &header, &opened).expect("description");
            let mut data = vec![0u8; header.len as usize];
            // out of the pipe: its first 2 bytes pulled first, as the progress thread does
            // before a receive is posted; the rest into two slices
            let mut prefix = Vec::new();
            if forge.is_none() {
                prefix = vec![0u8; 2];
                assert!(readable(&lent) && pull(&mut lent, &mut [&mut prefix]).is_ok(), "pull the prefix");
            }
            let (front, back) = data.split_at_mut(3);
            receive(&mut b, crate::mailbox::Polling::default(), &mut lent, &prefix, &mut [front, back])
                .expect("receive");
            let read = sender.join().expect("sender");
            (data, read)
        })
    }

    /// A receiver finds out what it can take from the process at the other end of a
    /// connection, and the sender reads it back; over another process's id (another pid
    /// namespace) or no process at all, nothing is lent.
    #[test]
    fn a_receiver_tells_the_sender_what_it_can_take() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socket pair");
        let a: Box<dyn Stream> = Box::new(a);
        let access = Access::of_peer(&*a);
        assert_eq!(access.pid, std::process::id());
        assert!(access.pipes, "a process can open its own /proc/PID/fd");
        assert_eq!(access.memory, cross_memory(), "the probe agrees with a real read");
        assert_eq!(Access::decode(access.encode()), access);
        let other = Access { pid: std::process::id() + 1, ..access };
        assert_eq!(Access::decode(other.encode()), Access::NONE);
        let none = Access { pipes: false, memory: false, pid: std::process::id() };
        assert_eq!(Access::decode(none.encode()), none);
        assert_eq!(Access::decode(Access::NONE.encode()), Access::NONE);
    }

    #[test]
    fn pipes_shrink_with_the_ranks_of_a_host_and_stop_at_a_quota() {
        let quota: usize = std::fs::read_to_string("/proc/sys/fs/pipe-user-pages-soft")
            .expect("quota")
            .trim()
            .parse()
            .expect("pages");
        if quota == 0 {
            assert_eq!(pipe_size(1000), Some(LEND_MAX));
            return;
        }
        let sizes: Vec<Option<usize>> = [1, 2, 8, 16, 64, 1000].into_iter().map(pipe_size).collect();
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
        assert!(sizes[0].is_some_and(|s| s <= LEND_MAX && s.is_power_of_two()));
        assert_eq!(sizes[5], None, "1000 ranks' pipes would take {quota} pages");
        // every pipe of the host together within half the quota
        for (local, size) in [1usize, 2, 8, 16, 64].into_iter().zip(&sizes) {
            let total = size.unwrap_or(0) * local * (local - 1);
            assert!(total <= quota * 4096 / 2, "{local} ranks: {total} bytes of pipes");
        }
    }

    #[test]
    fn a_lent_payload_is_read_from_the_pipe() {
        let (x, y) = (vec![1u8; 100_000], vec![2u8; 5]);
        let (data, read) = exchange(&[&x, &[], &y], None);
        assert!(read, "read from the pipe");
        assert_eq!(data.len(), 100_005);
        assert!(data[..100_000].iter().all(|&b| b == 1) && data[100_000..] == [2; 5]);
    }

    #[test]
    fn another_processs_pipe_is_refused_and_the_bytes_come_on_the_stream() {
        let x: Vec<u8> = (0..70_000).map(|i| i as u8).collect();
        let (data, read) = exchange(&[&x], Some(1));
        assert!(!read);
        assert_eq!(data, x);
    }

    /// The receiver opens a sender's pipe once per connection, and every message through it
    /// arrives whole and in order, the pipe empty after each.
    #[test]
    fn one_pipe_carries_message_after_message() {
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        // half a mebibyte, as each pipe is where a host runs 5 to 8 ranks: a pipe's worth is
        // lent through it (from `MEMORY_MIN` on, messages are read out of memory)
        let pipe = Pipe::new(LEND_MAX / 2).expect("pipe");
        assert!(pipe.capacity < MEMORY_MIN);
        let opened = opened_for(&b);
        let sizes = [LEND_MIN, 65_537, 300_000, pipe.capacity - pipe.page];
        std::thread::scope(|s| {
            s.spawn(|| {
                for (i, &n) in sizes.iter().enumerate() {
                    let data: Vec<u8> = (0..n).map(|j| (j * 7 + i) as u8).collect();
                    assert!(
                        send(&mut a, Polling::default(), &pipe, 0, i as u32, &[&data]).expect("send"),
                        "message {i} written"
                    );
                }
                // a pipe's worth, page-aligned as the benchmarks' buffers are, and a few bytes
                // more (as a collective's signature), which come in the frame
                let mut whole = vec![0u8; pipe.capacity + pipe.page];
                let start = whole.as_ptr().align_offset(pipe.page);
                let aligned = &mut whole[start..][..pipe.capacity];
                aligned.iter_mut().enumerate().for_each(|(k, v)| *v = (k % 251) as u8);
                let parts: [&[u8]; 2] = [aligned, b"signature"];
                assert!(pipe.holds(&parts, MEMORY_MIN), "a pipe's worth and a signature go through the pipe");
                assert!(send(&mut a, Polling::default(), &pipe, 0, 9, &parts).expect("send"), "written");
            });
            for (i, &n) in sizes.iter().enumerate() {
                let header = read_header(&mut b, u64::MAX).expect("header").expect("a frame");
                assert_eq!((header.tag, header.len), (i as u32, n as u64));
                let mut lent = read(&mut b, &header, &opened).expect("description");
                let mut got = vec![0u8; n];
                receive(&mut b, crate::mailbox::Polling::default(), &mut lent, &[], &mut [&mut got])
                    .expect("receive");
                assert!(got.iter().enumerate().all(|(j, &v)| v == (j * 7 + i) as u8), "message {i}");
            }
            let header = read_header(&mut b, u64::MAX).expect("header").expect("a frame");
            assert_eq!(header.len as usize, pipe.capacity + 9);
            let mut lent = read(&mut b, &header, &opened).expect("description");
            let (mut body, mut sig) = (vec![0u8; pipe.capacity - 3], [0u8; 12]);
            receive(&mut b, crate::mailbox::Polling::default(), &mut lent, &[], &mut [&mut body, &mut sig])
                .expect("receive");
            assert_eq!(&sig[3..], b"signature");
            assert!(body.iter().chain(&sig[..3]).enumerate().all(|(k, &v)| v == (k % 251) as u8));
        });
        let scattered: Vec<Vec<u8>> = (0..MAX_PIECES + 2).map(|_| vec![0u8; 1024]).collect();
        let parts: Vec<&[u8]> = scattered.iter().map(Vec::as_slice).collect();
        assert!(send(&mut a, Polling::default(), &pipe, 0, 0, &parts).is_err(), "too many pieces");
    }

    /// Where the host runs too many ranks for lending pipes, each is one page and holds no
    /// message that may be lent: every one is read out of memory.
    #[test]
    fn a_memory_only_pipe_holds_no_lent_message() {
        let pipe = Pipe::new(MEMORY_ONLY_PIPE).expect("pipe");
        assert!(pipe.capacity <= 2 * MEMORY_ONLY_PIPE, "{} bytes", pipe.capacity);
        let page = vec![7u8; LEND_MIN];
        assert!(pipe.takes(&[&page]) && !pipe.holds(&[&page], MEMORY_MIN));
    }

    /// A message longer than the pipe is read out of the sender's memory, in pieces (as the
    /// progress thread reads one nobody waits for) and then whole into a receive's buffers.
    #[test]
    fn a_message_longer_than_the_pipe_is_read_out_of_memory() {
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        let pipe = Pipe::new(LEND_MAX).expect("pipe");
        let n = 3 * pipe.capacity + 12_345;
        let data: Vec<u8> = (0..n).map(|j| (j * 13 + j / 4099) as u8).collect();
        let (x, y) = data.split_at(pipe.capacity / 3 + 1);
        assert!(!pipe.holds(&[x, y, b"tail"], MEMORY_MIN), "too long for the pipe");
        std::thread::scope(|s| {
            let sender = s.spawn(|| send(&mut a, Polling::default(), &pipe, 5, 6, &[x, y, b"tail"]));
            let header = read_header(&mut b, u64::MAX).expect("header").expect("a frame");
            assert_eq!(header.len as usize, n + 4);
            let opened = opened_for(&b);
            let mut lent = read(&mut b, &header, &opened).expect("description");
            assert_eq!(readable(&lent), cross_memory(), "this process may read its own memory");
            let mut prefix = vec![0u8; if cross_memory() { 100_000 } else { 0 }];
            for step in prefix.chunks_mut(30_001) {
                assert!(pull(&mut lent, &mut [step]).is_ok(), "pull");
            }
            let mut got = vec![0u8; n + 4];
            let (front, back) = got.split_at_mut(n - 2);
            receive(&mut b, crate::mailbox::Polling::default(), &mut lent, &prefix, &mut [front, back])
                .expect("receive");
            // (written on the stream where the system forbids cross-memory attach)
            assert_eq!(sender.join().expect("sender").expect("send"), cross_memory(), "read out of memory");
            assert!(got[..n] == data[..] && &got[n..] == b"tail");
        });
    }

    /// A receive posted for a message lent in memory by a sender that waits for it shares the
    /// copy: it reads the first half, the sender writes the second into its buffer; when the
    /// sender cannot, the receive reads that half too.
    #[test]
    fn a_receive_and_a_waiting_sender_share_the_copy() {
        if !cross_memory() {
            eprintln!("cross-memory attach is not allowed here (a seccomp profile?): nothing to share");
            return;
        }
        let n = 4 * SHARE_MIN + 777;
        let data: Vec<u8> = (0..n).map(|j| (j * 31 + j / 4099) as u8).collect();
        let (x, y) = data.split_at(SHARE_MIN / 3);
        // the real sender, then one that answers a request to write as if it could not
        for writes in [true, false] {
            let (mut a, mut b) = UnixStream::pair().expect("pair");
            let pipe = Pipe::new(LEND_MAX).expect("pipe");
            std::thread::scope(|s| {
                let sender = s.spawn(|| {
                    if writes {
                        return send(&mut a, Polling::default(), &pipe, 1, 2, &[x, y, b"sig"]).expect("send");
                    }
                    let h = Header { kind: KIND_LEND, context: 1, tag: 2, len: n as u64 };
                    let mut f = h.encode().to_vec();
                    f.extend_from_slice(&std::process::id().to_le_bytes());
                    f.extend_from_slice(&IN_MEMORY.to_le_bytes());
                    f.extend_from_slice(&0u32.to_le_bytes());
                    f.extend_from_slice(&1u32.to_le_bytes());
                    f.extend_from_slice(&HELPS.to_le_bytes());
                    f.extend_from_slice(&(data.as_ptr() as u64).to_le_bytes());
                    f.extend_from_slice(&(n as u64).to_le_bytes());
                    a.write_all(&f).expect("frame");
                    let mut request = [0u8; 25];
                    a.read_exact(&mut request).expect("request");
                    assert_eq!(request[0], WRITE);
                    a.write_all(&[UNWRITTEN]).expect("answer");
                    let mut answer = [0u8];
                    a.read_exact(&mut answer).expect("answer");
                    answer[0] == READ
                });
                let header = read_header(&mut b, u64::MAX).expect("header").expect("a frame");
                let opened = opened_for(&b);
                let mut lent = read(&mut b, &header, &opened).expect("description");
                let mut got = vec![0u8; header.len as usize];
                let (body, tail) = got.split_at_mut(n - 1);
                receive(&mut b, crate::mailbox::Polling::default(), &mut lent, &[], &mut [body, tail])
                    .expect("receive");
                assert!(sender.join().expect("sender"), "read");
                if writes {
                    assert!(got[..n] == data[..] && &got[n..] == b"sig", "shared");
                } else {
                    assert_eq!(got, data, "read whole by the receive");
                }
            });
        }
    }

    /// A receive shares the copy of a message lent in memory with its sender only if the CPU
    /// the sender names in the frame (it is bound there) is not the receive's: on one CPU the
    /// two would only take turns. A frame with unknown flags is an error.
    #[test]
    fn a_receive_shares_the_copy_only_with_a_sender_on_another_cpu() {
        if !cross_memory() {
            eprintln!("cross-memory attach is not allowed here (a seccomp profile?): nothing to share");
            return;
        }
        let n = 2 * SHARE_MIN;
        let data: Vec<u8> = (0..n).map(|j| (j * 7 + j / 4099) as u8).collect();
        let frame = |flags: u32| {
            let h = Header { kind: KIND_LEND, context: 1, tag: 2, len: n as u64 };
            let mut f = h.encode().to_vec();
            for word in [std::process::id(), IN_MEMORY as u32, 0, 1, flags] {
                f.extend_from_slice(&word.to_le_bytes());
            }
            f.extend_from_slice(&(data.as_ptr() as u64).to_le_bytes());
            f.extend_from_slice(&(n as u64).to_le_bytes());
            f
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                // this thread stays on the CPU it runs on, as a bound rank's
                let here = rustix::thread::sched_getcpu();
                let mut only_here = CpuSet::new();
                only_here.set(here);
                if rustix::thread::sched_setaffinity(None, &only_here).is_err() {
                    return eprintln!("cannot bind the test's thread: nothing to check");
                }
                for (cpu, shares) in [(here, false), (here + 1, true)] {
                    let (mut a, mut b) = UnixStream::pair().expect("pair");
                    let flags = HELPS | ((cpu as u32 + 1) << CPU_SHIFT);
                    a.write_all(&frame(flags)).expect("frame");
                    let sender = s.spawn(move || {
                        let mut first = [0u8];
                        a.read_exact(&mut first).expect("answer");
                        if first[0] == WRITE {
                            let mut rest = [0u8; 24];
                            a.read_exact(&mut rest).expect("request");
                            a.write_all(&[UNWRITTEN]).expect("answer");
                            a.read_exact(&mut first).expect("answer");
                            assert_eq!(first[0], READ);
                            return true;
                        }
                        assert_eq!(first[0], READ);
                        false
                    });
                    let header = read_header(&mut b, u64::MAX).expect("header").expect("a frame");
                    let opened = opened_for(&b);
                    let mut lent = read(&mut b, &header, &opened).expect("description");
                    let mut got = vec![0u8; n];
                    receive(&mut b, crate::mailbox::Polling::default(), &mut lent, &[], &mut [&mut got])
                        .expect("receive");
                    assert_eq!(got, data, "sender on CPU {cpu}, receive on {here}");
                    assert_eq!(sender.join().expect("sender"), shares, "shared with a sender on CPU {cpu}");
                }
            });
        });
        // bits beside HELPS, RENDEZVOUS and the CPU are no flag this version knows
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        a.write_all(&frame(HELPS | 4)).expect("frame");
        let header = read_header(&mut b, u64::MAX).expect("header").expect("a frame");
        let opened = opened_for(&b);
        assert!(read(&mut b, &header, &opened).is_err(), "unknown flags");
    }

    /// A frame naming memory of a process other than the socket's peer is refused, and the
    /// bytes come on the stream; one whose pieces do not add up to its length is an error.
    #[test]
    fn memory_of_another_process_is_refused_and_bad_descriptions_are_errors() {
        let payload: Vec<u8> = (0..70_000).map(|i| i as u8).collect();
        let frame = |pid: u32, pieces: &[(u64, u64)]| {
            let h = Header { kind: KIND_LEND, context: 7, tag: 3, len: payload.len() as u64 };
            let mut f = h.encode().to_vec();
            f.extend_from_slice(&pid.to_le_bytes());
            f.extend_from_slice(&IN_MEMORY.to_le_bytes());
            f.extend_from_slice(&0u32.to_le_bytes());
            f.extend_from_slice(&(pieces.len() as u32).to_le_bytes());
            f.extend_from_slice(&0u32.to_le_bytes());
            for (base, len) in pieces {
                f.extend_from_slice(&base.to_le_bytes());
                f.extend_from_slice(&len.to_le_bytes());
            }
            f
        };
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        a.write_all(&frame(1, &[(payload.as_ptr() as u64, payload.len() as u64)])).expect("write");
        let header = read_header(&mut b, u64::MAX).expect("header").expect("a frame");
        let opened = opened_for(&b);
        let mut lent = read(&mut b, &header, &opened).expect("description");
        assert!(!readable(&lent), "process 1's memory");
        let mut got = vec![0u8; payload.len()];
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut answer = [0u8];
                a.read_exact(&mut answer).expect("answer");
                assert_eq!(answer[0], SEND);
                a.write_all(&payload).expect("bytes");
            });
            receive(&mut b, crate::mailbox::Polling::default(), &mut lent, &[], &mut [&mut got])
                .expect("receive");
        });
        assert_eq!(got, payload);
        let me = std::process::id();
        let base = payload.as_ptr() as u64;
        for pieces in
            [vec![(base, 100)], vec![(base, u64::MAX), (base, 70_001)], vec![(base, 1); MAX_PIECES + 1]]
        {
            let (mut a, mut b) = UnixStream::pair().expect("pair");
            a.write_all(&frame(me, &pieces)).expect("write");
            let header = read_header(&mut b, u64::MAX).expect("header").expect("a frame");
            let opened = opened_for(&b);
            assert!(read(&mut b, &header, &opened).is_err(), "{} pieces", pieces.len());
        }
        // a frame naming a pipe has no pieces in memory
        let mut f = frame(me, &[(base, payload.len() as u64)]);
        f[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&5i32.to_le_bytes());
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        a.write_all(&f).expect("write");
        let header = read_header(&mut b, u64::MAX).expect("header").expect("a frame");
        let opened = opened_for(&b);
        assert!(read(&mut b, &header, &opened).is_err(), "a pipe's frame with pieces");
        // flags it does not know, and a source that is neither a descriptor nor memory
        for (at, word) in [(16, 0x80u32), (4, -2i32 as u32)] {
            let mut f = frame(me, &[(base, payload.len() as u64)]);
            f[HEADER_LEN + at..HEADER_LEN + at + 4].copy_from_slice(&word.to_le_bytes());
            let (mut a, mut b) = UnixStream::pair().expect("pair");
            a.write_all(&f).expect("write");
            let header = read_header(&mut b, u64::MAX).expect("header").expect("a frame");
            let opened = opened_for(&b);
            assert!(read(&mut b, &header, &opened).is_err(), "word {word:#x} at {at}");
        }
    }
}
