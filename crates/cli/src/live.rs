//! `softiommu inspect --live`: finds a running session and shows its
//! server's state.

use softiommu_server::inspect;
use std::path::{Path, PathBuf};

/// The socket of the session `which` names: a session directory, its
/// socket, or the pid of its `softiommu run`; with `None`, the one session
/// of this user that is running (an error when there are none or several).
pub fn session_socket(which: Option<&str>) -> Result<PathBuf, String> {
    if let Some(w) = which {
        let path = Path::new(w);
        if path.is_dir() {
            return Ok(path.join(crate::run::SOCKET_NAME));
        }
        if path.exists() {
            return Ok(path.to_owned());
        }
        if let Ok(pid) = w.parse::<i32>() {
            return crate::run::sessions()
                .into_iter()
                .find(|(p, _)| *p == pid)
                .map(|(_, dir)| dir.join(crate::run::SOCKET_NAME))
                .ok_or_else(|| format!("no running session of softiommu run {pid}"));
        }
        return Err(format!("{w}: no session directory, socket or pid"));
    }
    let mut found = crate::run::sessions();
    match found.len() {
        0 => Err("no running softiommu session of this user".into()),
        1 => Ok(found.remove(0).1.join(crate::run::SOCKET_NAME)),
        _ => {
            let list: Vec<String> = found
                .iter()
                .map(|(pid, dir)| format!("{pid} ({})", dir.display()))
                .collect();
            Err(format!(
                "several sessions run; name one (a pid or directory): {}",
                list.join(", ")
            ))
        }
    }
}

/// Prints the state of the session `which` names, as text or JSON.
pub fn inspect_live(which: Option<&str>, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let socket = session_socket(which)?;
    let doc = inspect::fetch(&socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    if json {
        println!("{doc}");
    } else {
        print!("{}", inspect::render(&doc));
    }
    Ok(())
}
