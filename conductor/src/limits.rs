//! The operating system's limits on processes, threads and open files, in words a user
//! can act on: a worker that cannot start says which limit stopped it, and a runtime
//! the system refuses a thread is an error, not a panic.

use std::io;

/// Whether `error` says the system refused a process, a thread or a file: a limit,
/// not a bug, and no use retrying at once.
pub(crate) fn is_exhausted(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EAGAIN | libc::EMFILE | libc::ENFILE | libc::ENOMEM)
    )
}

/// `error`, followed by the limit it most likely hit and its value here.
pub(crate) fn explain(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(libc::EMFILE) => format!(
            "{error}: this process may open {} files (`ulimit -n`)",
            soft_limit(libc::RLIMIT_NOFILE)
        ),
        Some(libc::ENFILE) => format!("{error}: the system's open-file table is full"),
        Some(libc::EAGAIN) => format!(
            "{error}: this user may run {} processes and threads in all (`ulimit -u`)",
            soft_limit(libc::RLIMIT_NPROC)
        ),
        Some(libc::ENOMEM) => {
            format!("{error}: out of memory for another process or thread (`ulimit -v`)")
        }
        _ => error.to_string(),
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = libc::c_int;

fn soft_limit(resource: Resource) -> String {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit, which lives on this frame.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return "unlimited".into();
    }
    limit.rlim_cur.to_string()
}

/// Builds a tokio runtime, or calls `refused` with the system's error and never
/// returns: `refused` ends the process. Tokio panics when the system refuses it a
/// thread, and the runtime it half built would then hang the unwinding (its drop waits
/// for the thread it did start), so `refused` runs from the panic hook, before any
/// unwinding.
pub(crate) fn build_runtime(
    builder: &mut tokio::runtime::Builder,
    refused: impl Fn(io::Error) + Send + Sync + 'static,
) -> tokio::runtime::Runtime {
    let refused = std::sync::Arc::new(refused);
    let previous = std::sync::Arc::new(std::panic::take_hook());
    let building = std::thread::current().id();
    std::panic::set_hook(Box::new({
        let (refused, previous) = (refused.clone(), previous.clone());
        move |info| {
            // Another thread's panic is none of ours: it is told as it would have been.
            if std::thread::current().id() != building {
                return previous(info);
            }
            let message = info.to_string();
            refused(os_error_in(&message).unwrap_or_else(|| io::Error::other(message)));
        }
    }));
    let built = builder.build();
    std::panic::set_hook(Box::new(move |info| previous(info)));
    match built {
        Ok(runtime) => runtime,
        Err(e) => {
            refused(e);
            unreachable!("a refused runtime ends the process")
        }
    }
}

/// The system error a panic message quotes (`(os error N)` or `Os { code: N, .. }`),
/// as that error.
fn os_error_in(message: &str) -> Option<io::Error> {
    ["(os error ", "Os { code: "].iter().find_map(|marker| {
        let (_, rest) = message.rsplit_once(marker)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some(io::Error::from_raw_os_error(digits.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_named_with_their_values() {
        let refused = io::Error::from_raw_os_error(libc::EAGAIN);
        assert!(is_exhausted(&refused));
        assert!(
            explain(&refused).contains("ulimit -u"),
            "{}",
            explain(&refused)
        );
        let files = io::Error::from_raw_os_error(libc::EMFILE);
        assert!(explain(&files).contains("ulimit -n"), "{}", explain(&files));
        assert!(!is_exhausted(&io::Error::from_raw_os_error(libc::ENOENT)));
    }

    #[test]
    fn the_os_error_of_a_panic_message_is_found() {
        let e = os_error_in(
            "OS can't spawn worker thread: Resource temporarily unavailable (os error 11)",
        )
        .unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::EAGAIN));
        let e = os_error_in(r#"failed to create UnixStream: Os { code: 24, kind: Uncategorized }"#)
            .unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
        assert!(os_error_in("no error here").is_none());
    }
}
