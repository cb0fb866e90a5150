//! What one misbehaving client can do to the server: a connection that
//! never says hello is closed, not kept forever.

use softiommu_server::{Server, HELLO_TIMEOUT};
use std::io::Read;
use std::os::unix::net::UnixStream;

#[test]
fn a_connection_without_a_hello_is_closed() {
    let dir = std::env::temp_dir().join(format!("softiommu-limits-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("socket");
    let server = Server::bind(&path).unwrap();
    std::thread::spawn(move || server.serve());
    let mut idle = UnixStream::connect(&path).unwrap();
    idle.set_read_timeout(Some(HELLO_TIMEOUT * 10)).unwrap();
    let mut byte = [0u8; 1];
    // End-of-file: the server closed its end (a read timing out instead
    // would fail the unwrap).
    assert_eq!(idle.read(&mut byte).unwrap(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
