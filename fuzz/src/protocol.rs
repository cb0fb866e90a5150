//! The server's wire protocol from raw sockets, against a server running in
//! this process (so the process that connects is the one the server reads
//! and writes: every pointer a call carries is kept inside a scratch
//! buffer, and so is every length).
//!
//! Operations (first byte, modulo 8): 0 open a file the proper way (a
//! context, a container, a VFIO device or group, with its descriptor
//! proved); 1 open a packet call channel; 2 a call on a channel (its op,
//! request and fields from the input, its file one of ours or made up);
//! 3 a connection that says garbage; 4 close a file or channel; 5 garbage
//! on an open channel; 6 bytes into the scratch buffer; 7 a hello that
//! claims an inode it does not prove.

use crate::Input;
use softiommu_proto::*;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;
use zerocopy::{FromBytes, IntoBytes};

/// Where call pointers point: 1 MiB, of which the first 64 KiB hold
/// structs and the rest is room for what the server writes after them.
const SCRATCH_LEN: usize = 1 << 20;
const STRUCTS_LEN: u64 = 64 << 10;

struct Shared {
    socket: PathBuf,
    scratch: &'static mut [u8],
}

/// The server and the scratch buffer, made once per process.
fn shared() -> &'static std::sync::Mutex<Shared> {
    static SHARED: OnceLock<std::sync::Mutex<Shared>> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("softiommu-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory for the server");
        let socket = dir.join("iommu.sock");
        let server = softiommu_server::Server::bind(&socket).expect("the server binds");
        std::thread::spawn(move || server.serve());
        std::sync::Mutex::new(Shared {
            socket,
            scratch: Box::leak(vec![0u8; SCRATCH_LEN].into_boxed_slice()),
        })
    })
}

fn connect(socket: &PathBuf) -> Option<UnixStream> {
    let s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    Some(s)
}

/// Sends `bytes` with the stream's own descriptor attached.
fn send_self(s: &UnixStream, bytes: &[u8]) -> bool {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [s.as_raw_fd()];
    let iov = [std::io::IoSlice::new(bytes)];
    sendmsg::<()>(
        s.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .is_ok()
}

fn inode(s: &UnixStream) -> u64 {
    nix::sys::stat::fstat(s.as_raw_fd()).map_or(0, |st| st.st_ino)
}

pub fn run(data: &[u8]) {
    // A write to a connection the server closed is EPIPE, not the end.
    let mut pipe = nix::sys::signal::SigSet::empty();
    pipe.add(nix::sys::signal::Signal::SIGPIPE);
    let _ = pipe.thread_block();
    let mut shared = shared().lock().unwrap_or_else(|e| e.into_inner());
    let Shared { socket, scratch } = &mut *shared;
    let base = scratch.as_ptr() as u64;
    let mut input = Input::new(data);
    let mut files: Vec<(UnixStream, u64)> = Vec::new();
    let mut channels: Vec<UnixStream> = Vec::new();
    while let Some(op) = input.byte() {
        match op % 8 {
            0 => {
                let kind = input.pick(&[
                    HELLO_CONTEXT,
                    HELLO_VFIO_CONTAINER,
                    HELLO_VFIO_DEVICE,
                    HELLO_VFIO_GROUP,
                ]);
                let index = u32::from(input.byte().unwrap_or(0) % 12);
                let Some(s) = connect(socket) else { continue };
                let ino = inode(&s);
                let hello = Hello {
                    magic: MAGIC,
                    kind: kind.unwrap_or(HELLO_CONTEXT),
                    ino,
                    index,
                    reserved: 0,
                };
                let mut reply = Reply::default();
                if send_self(&s, hello.as_bytes())
                    && (&s).read_exact(reply.as_mut_bytes()).is_ok()
                    && reply.errno == 0
                {
                    files.push((s, ino));
                }
            }
            1 => {
                let Some(mut s) = connect(socket) else {
                    continue;
                };
                let hello = Hello {
                    magic: MAGIC,
                    kind: HELLO_CALL,
                    ..Default::default()
                };
                if s.write_all(hello.as_bytes()).is_ok() {
                    channels.push(s);
                }
            }
            2 => {
                let Some(i) = pick_index(&mut input, channels.len()) else {
                    continue;
                };
                let mut call =
                    Call::read_from_bytes(&padded::<48>(input.bytes(48))).unwrap_or_default();
                call.op %= 16;
                if call.ino & 1 == 0 {
                    if let Some(f) = pick_index(&mut input, files.len()) {
                        call.ino = files[f].1;
                    }
                }
                // Pointers and lengths stay inside the scratch buffer.
                call.arg = base + call.arg % STRUCTS_LEN;
                call.len %= (SCRATCH_LEN as u64) - STRUCTS_LEN;
                let s = &mut channels[i];
                let mut reply = Reply::default();
                if s.write_all(call.as_bytes()).is_err()
                    || s.read_exact(reply.as_mut_bytes()).is_err()
                {
                    channels.swap_remove(i);
                }
            }
            3 => {
                let Some(mut s) = connect(socket) else {
                    continue;
                };
                let _ = s.write_all(input.blob());
                let _ = s.shutdown(std::net::Shutdown::Write);
                s.set_read_timeout(Some(Duration::from_millis(50))).ok();
                let mut sink = [0u8; 256];
                let _ = s.read(&mut sink);
            }
            4 => {
                if input.byte().unwrap_or(0) & 1 == 0 {
                    if let Some(i) = pick_index(&mut input, files.len()) {
                        files.swap_remove(i);
                    }
                } else if let Some(i) = pick_index(&mut input, channels.len()) {
                    channels.swap_remove(i);
                }
            }
            5 => {
                if let Some(i) = pick_index(&mut input, channels.len()) {
                    let mut s = channels.swap_remove(i);
                    let _ = s.write_all(input.blob());
                }
            }
            6 => {
                let at = (u64::from(input.byte().unwrap_or(0)) * 256) % STRUCTS_LEN;
                let bytes = input.blob();
                scratch[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
            }
            _ => {
                let Some(s) = connect(socket) else { continue };
                let claimed = pick_index(&mut input, files.len()).map_or(0, |f| files[f].1);
                let hello = Hello {
                    magic: MAGIC,
                    kind: HELLO_CONTEXT,
                    ino: claimed,
                    ..Default::default()
                };
                let _ = (&s).write_all(hello.as_bytes());
                let mut reply = Reply::default();
                assert!(
                    (&s).read_exact(reply.as_mut_bytes()).is_err(),
                    "a hello that proves nothing is answered"
                );
            }
        }
    }
}

fn pick_index(input: &mut Input<'_>, len: usize) -> Option<usize> {
    if len == 0 {
        return None;
    }
    Some(input.byte().unwrap_or(0) as usize % len)
}

fn padded<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out[..bytes.len()].copy_from_slice(bytes);
    out
}
