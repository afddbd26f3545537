//! sd_notify, written out: when systemd (or anything else) sets `NOTIFY_SOCKET`, state changes
//! are sent to it as one Unix datagram each (`READY=1`, `RELOADING=1`, `STOPPING=1`,
//! `MAINPID=`, `STATUS=`). A path starting with `@` names an abstract socket. Without
//! `NOTIFY_SOCKET` every call is a no-op; a send that fails is reported once to the caller and
//! never stops the gateway. Control plane only (one syscall, never on a worker).

use std::os::unix::net::UnixDatagram;

/// Sends `state` (newline-separated `KEY=VALUE` lines) to `$NOTIFY_SOCKET`, if set.
/// `Ok(false)` when no socket is configured.
pub fn send(state: &str) -> std::io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(path) if !path.is_empty() => {
            send_to(&path, state)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Sends one datagram to the socket at `path` (`@name` = abstract namespace).
pub fn send_to(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?
    } else {
        sock.send_to(state.as_bytes(), path)?
    };
    if sent != state.len() {
        return Err(std::io::Error::other("short datagram write"));
    }
    Ok(())
}

/// `send`, logging (not returning) a failure: the service manager being unreachable must not
/// change what the gateway does.
pub fn tell(state: &str) {
    if let Err(e) = send(state) {
        crate::log::warn(&format!("sd_notify {:?}: {e}", first_line(state)));
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// `MONOTONIC_USEC=` for `RELOADING=1` (systemd asks for it with reload notifications).
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_to_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("ringway-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");

        // Nobody listening: an error for the caller, not a panic.
        assert!(send_to(dir.path().join("absent").as_os_str(), "READY=1").is_err());
    }
}
