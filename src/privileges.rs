//! Dropping root: `[server] user` / `group` name the account a gateway started as root runs as
//! once its listeners are bound (the way nginx's master binds port 80 and its workers run as
//! `www-data`). Owns name lookup (`getpwnam_r`/`getgrnam_r`, done while compiling the config so
//! an unknown user is a config error with file and line) and the drop itself.
//!
//! Invariants: the drop happens before any worker thread, admin thread or writer thread serves
//! anything; it clears the supplementary groups, then sets the group, then the user (the other
//! order would leave no right to change the group), on every thread (glibc's `setuid` applies
//! to the whole process), and is verified: a process that could regain root (real, effective or
//! saved id 0, or `setuid(0)` succeeding) refuses to continue.

use std::ffi::CString;

/// The account to run as, resolved to numeric ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    /// The `group` setting, or the user's primary group.
    pub group: String,
    pub gid: u32,
}

/// Resolves `user` (and `group`, default: the user's primary group) to ids.
pub fn resolve(user: &str, group: Option<&str>) -> Result<RunAs, String> {
    let (uid, primary) = lookup_user(user)?.ok_or_else(|| {
        format!("no such user {user:?} (create it, e.g. `useradd --system {user}`)")
    })?;
    let (group, gid) = match group {
        Some(g) => (
            g.to_string(),
            lookup_group(g)?.ok_or_else(|| format!("no such group {g:?}"))?,
        ),
        None => (
            group_name(primary).unwrap_or_else(|| primary.to_string()),
            primary,
        ),
    };
    Ok(RunAs {
        user: user.to_string(),
        uid,
        group,
        gid,
    })
}

/// What `drop_to` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Started as root: now running as the account.
    Switched,
    /// Not root and already that user: nothing to do.
    AlreadyThatUser,
    /// Not root and another user: cannot switch; the caller logs a warning.
    NotRoot { uid: u32 },
}

/// Switches the whole process to `who` if it runs as root; verifies root cannot come back.
pub fn drop_to(who: &RunAs) -> Result<Dropped, String> {
    // SAFETY: the id getters have no preconditions.
    let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    if uid != 0 && euid != 0 {
        return Ok(if uid == who.uid && euid == who.uid {
            Dropped::AlreadyThatUser
        } else {
            Dropped::NotRoot { uid: euid }
        });
    }
    let groups = [who.gid as libc::gid_t];
    // SAFETY: setgroups reads one gid from the local array; setgid/setuid take plain ids.
    unsafe {
        if libc::setgroups(1, groups.as_ptr()) != 0 {
            return Err(format!("setgroups({}): {}", who.gid, errno()));
        }
        if libc::setgid(who.gid) != 0 {
            return Err(format!("setgid({}): {}", who.gid, errno()));
        }
        if libc::setuid(who.uid) != 0 {
            return Err(format!("setuid({}): {}", who.uid, errno()));
        }
    }
    verify(who)?;
    Ok(Dropped::Switched)
}

/// Real, effective and saved ids are all the target's and root is out of reach.
fn verify(who: &RunAs) -> Result<(), String> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    let (mut gr, mut ge, mut gs) = (0, 0, 0);
    // SAFETY: the getters write three ids into the locals we pass.
    let ok = unsafe {
        libc::getresuid(&mut r, &mut e, &mut s) == 0
            && libc::getresgid(&mut gr, &mut ge, &mut gs) == 0
    };
    if !ok {
        return Err(format!("getresuid: {}", errno()));
    }
    if [r, e, s] != [who.uid; 3] || [gr, ge, gs] != [who.gid; 3] {
        return Err(format!(
            "after dropping privileges uids are {r}/{e}/{s} and gids {gr}/{ge}/{gs}, expected {}/{}",
            who.uid, who.gid
        ));
    }
    // A target uid of 0 is "stay root", which the config refuses; this is the last guard.
    // SAFETY: setuid takes a plain id; if it succeeds we refuse to run anyway.
    if who.uid != 0 && unsafe { libc::setuid(0) } == 0 {
        return Err("root could be regained after dropping privileges".to_string());
    }
    Ok(())
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// `Some((uid, primary gid))`, `None` when there is no such user.
fn lookup_user(name: &str) -> Result<Option<(u32, u32)>, String> {
    let c = CString::new(name).map_err(|_| format!("user {name:?} contains a NUL byte"))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain data filled by getpwnam_r, whose strings point into `buf`,
    // which outlives every use; `out` is null or points at `pw`.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out);
        if rc != 0 {
            return Err(format!(
                "looking up user {name:?}: {}",
                std::io::Error::from_raw_os_error(rc)
            ));
        }
        Ok((!out.is_null()).then_some((pw.pw_uid, pw.pw_gid)))
    }
}

fn lookup_group(name: &str) -> Result<Option<u32>, String> {
    let c = CString::new(name).map_err(|_| format!("group {name:?} contains a NUL byte"))?;
    let mut buf = vec![0 as libc::c_char; 64 * 1024];
    // SAFETY: as in lookup_user, with getgrnam_r and `group`.
    unsafe {
        let mut gr: libc::group = std::mem::zeroed();
        let mut out: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut out);
        if rc != 0 {
            return Err(format!(
                "looking up group {name:?}: {}",
                std::io::Error::from_raw_os_error(rc)
            ));
        }
        Ok((!out.is_null()).then_some(gr.gr_gid))
    }
}

fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 64 * 1024];
    // SAFETY: as in lookup_group; gr_name points into `buf` and is NUL-terminated.
    unsafe {
        let mut gr: libc::group = std::mem::zeroed();
        let mut out: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr(), buf.len(), &mut out);
        if rc != 0 || out.is_null() || gr.gr_name.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(gr.gr_name)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_root_and_nobody_and_refuses_unknown_names() {
        let root = resolve("root", None).unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        let nobody = resolve("nobody", Some("root")).unwrap();
        assert_ne!(nobody.uid, 0);
        assert_eq!(nobody.gid, 0);
        let e = resolve("no-such-user-ringway", None).unwrap_err();
        assert!(e.contains("no such user"), "{e}");
        let e = resolve("nobody", Some("no-such-group-ringway")).unwrap_err();
        assert!(e.contains("no such group"), "{e}");
        assert!(resolve("bad\0name", None).is_err());
    }
}
