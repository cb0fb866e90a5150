//! The softiommu server: the engine in one process, serving every program that
//! runs with the shim (see `softiommu-proto` for the vocabulary).
//!
//! Threads: one accepts connections; each context socket has a thread that
//! waits for its end-of-file (the program's last close); each call channel has a
//! thread that runs its ioctls. Lock order: the context table, then one
//! context; never two contexts at once.

use softiommu_engine::api::Engine;
use softiommu_engine::memory::{AddressSpace, ProcFiles, ProcessMemory};
use softiommu_engine::{Arg, Caller, Context, Credentials, Errno};
use softiommu_proto::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use zerocopy::{FromBytes, IntoBytes};

/// One context and the socket whose end-of-file releases it.
struct Hosted {
    context: Mutex<Context>,
    socket: UnixStream,
}

/// The server state shared by its threads.
struct State {
    engine: Engine,
    /// Contexts by the inode of the program's end of their socket.
    contexts: Mutex<HashMap<u64, Arc<Hosted>>>,
    /// One address space per process, so pins of one process's pages are counted
    /// together across its contexts.
    spaces: Mutex<HashMap<i32, Arc<dyn AddressSpace>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn space(&self, pid: i32) -> Arc<dyn AddressSpace> {
        lock(&self.spaces)
            .entry(pid)
            .or_insert_with(|| Arc::new(ProcessMemory::of(nix::unistd::Pid::from_raw(pid))))
            .clone()
    }

    /// Releases a context if its socket has reached end-of-file.
    fn release_if_closed(&self, ino: u64) {
        let hosted = lock(&self.contexts).get(&ino).cloned();
        if let Some(h) = hosted {
            let mut byte = [0u8; 1];
            let flags =
                nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT;
            if let Ok(0) = nix::sys::socket::recv(h.socket.as_raw_fd(), &mut byte, flags) {
                self.release(ino);
            }
        }
    }

    fn release(&self, ino: u64) {
        let hosted = lock(&self.contexts).remove(&ino);
        if let Some(h) = hosted {
            lock(&h.context).close();
        }
    }
}

/// A running server.
pub struct Server {
    state: Arc<State>,
    listener: UnixListener,
    path: PathBuf,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("path", &self.path).finish()
    }
}

impl Server {
    /// Listens at `path`, serving the built-in machine.
    pub fn bind(path: &Path) -> std::io::Result<Server> {
        Self::bind_with(path, Engine::new())
    }

    /// Listens at `path`, serving `engine`'s machine.
    pub fn bind_with(path: &Path, engine: Engine) -> std::io::Result<Server> {
        let listener = UnixListener::bind(path)?;
        let state = Arc::new(State {
            engine,
            contexts: Mutex::new(HashMap::new()),
            spaces: Mutex::new(HashMap::new()),
        });
        Ok(Server {
            state,
            listener,
            path: path.to_owned(),
        })
    }

    /// The engine behind the server (for inspection).
    pub fn engine(&self) -> &Engine {
        &self.state.engine
    }

    /// Accepts and serves connections until the listener fails.
    pub fn serve(self) {
        for stream in self.listener.incoming() {
            let Ok(stream) = stream else { break };
            let state = self.state.clone();
            std::thread::spawn(move || serve_connection(state, stream));
        }
    }
}

fn read_packet<T: FromBytes + IntoBytes>(stream: &mut UnixStream, out: &mut T) -> bool {
    stream.read_exact(out.as_mut_bytes()).is_ok()
}

fn serve_connection(state: Arc<State>, mut stream: UnixStream) {
    let mut hello = Hello::default();
    if !read_packet(&mut stream, &mut hello) || hello.magic != MAGIC {
        return;
    }
    match hello.kind {
        HELLO_CONTEXT => serve_context(state, stream, hello.ino),
        HELLO_CALL => serve_calls(state, stream),
        _ => {}
    }
}

fn serve_context(state: Arc<State>, stream: UnixStream, ino: u64) {
    let Ok(mut watch) = stream.try_clone() else {
        return;
    };
    let hosted = Arc::new(Hosted {
        context: Mutex::new(Context::new(state.engine.shared().clone())),
        socket: stream,
    });
    lock(&state.contexts).insert(ino, hosted);
    // The program's open() returns once the context exists.
    if watch.write_all(Reply::default().as_bytes()).is_err() {
        state.release(ino);
        return;
    }
    // Nothing else is sent on a context socket: a read ends at the last close.
    let mut sink = [0u8; 64];
    while let Ok(n) = watch.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
    state.release(ino);
}

/// Credentials of a process, from `/proc`.
fn credentials(pid: i32) -> Credentials {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let cap_eff = field("CapEff:")
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(0);
    let uid = field("Uid:")
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX);
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let memlock = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))
        .and_then(|l| l.split_whitespace().nth(3))
        .map(|v| {
            if v == "unlimited" {
                u64::MAX
            } else {
                v.parse().unwrap_or(0)
            }
        })
        .unwrap_or(8 << 20);
    Credentials {
        uid,
        cap_ipc_lock: cap_eff & (1 << 14) != 0,
        cap_sys_resource: cap_eff & (1 << 24) != 0,
        memlock_limit: memlock,
    }
}

fn serve_calls(state: Arc<State>, mut stream: UnixStream) {
    let Ok(peer) =
        nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
    else {
        return;
    };
    let pid = peer.pid();
    let mem = state.space(pid);
    let files = ProcFiles::of(nix::unistd::Pid::from_raw(pid));
    let creds = credentials(pid);
    let mut call = Call::default();
    while read_packet(&mut stream, &mut call) {
        let outcome: Result<i64, Errno> = match call.op {
            CALL_IOCTL => {
                let hosted = lock(&state.contexts).get(&call.ino).cloned();
                match hosted {
                    Some(h) => {
                        let caller = Caller {
                            mem: &mem,
                            files: &files,
                            creds,
                        };
                        lock(&h.context).ioctl(&caller, call.request, Arg::User(call.arg))
                    }
                    None => Err(Errno::EBADF),
                }
            }
            CALL_CLOSED => {
                state.release_if_closed(call.ino);
                Ok(0)
            }
            CALL_IS_CONTEXT => Ok(i64::from(lock(&state.contexts).contains_key(&call.ino))),
            _ => Err(Errno::EINVAL),
        };
        let reply = match outcome {
            Ok(result) => Reply {
                result,
                errno: 0,
                reserved: 0,
            },
            Err(e) => Reply {
                result: -1,
                errno: e.0,
                reserved: 0,
            },
        };
        if stream.write_all(reply.as_bytes()).is_err() {
            break;
        }
    }
}
