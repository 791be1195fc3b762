//! Named capabilities: a program the operator lets one app run in one folder
//! (`[app.capabilities.NAME]`), e.g. `git` in one repository.
//!
//! The app gives arguments and standard input; the host checks the first
//! argument against the allow list (so no option can come before a git
//! subcommand: no `-c`, no `--exec-path`), runs the program with a cleared
//! environment in the configured folder, caps its output and its time, and
//! returns status, stdout and stderr. For git the environment also limits
//! transports to local files (`GIT_ALLOW_PROTOCOL=file`), so no argument can
//! reach the network or run a transport helper.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::spec::CapabilitySpec;

/// Most bytes kept of a capability's stdout (and, separately, stderr).
pub const MAX_OUTPUT: usize = 256 << 20;

/// Why a capability did not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CapabilityError {
    /// The arguments are not acceptable.
    #[error("{0}")]
    Refused(String),
    /// The program could not run, or said too much.
    #[error("{0}")]
    Failed(String),
}

/// What the program did.
#[derive(Debug)]
pub struct Output {
    /// Exit status; -1 when killed (time limit) or ended by a signal.
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

fn read_capped(mut r: impl Read) -> std::io::Result<(Vec<u8>, bool)> {
    let mut out = vec![];
    let n = (&mut r).take(MAX_OUTPUT as u64 + 1).read_to_end(&mut out)?;
    // Drain the rest so the program is not blocked on a full pipe.
    let over = n > MAX_OUTPUT || std::io::copy(&mut r, &mut std::io::sink())? > 0;
    out.truncate(MAX_OUTPUT);
    Ok((out, over))
}

/// Checks `args` against the capability's allow list.
pub fn check(spec: &CapabilitySpec, args: &[String]) -> Result<(), CapabilityError> {
    if args.iter().any(|a| a.contains('\0')) {
        return Err(CapabilityError::Refused("an argument contains a NUL byte".into()));
    }
    if let Some(allow) = &spec.allow {
        let first = args.first().map(String::as_str).unwrap_or("");
        if !allow.iter().any(|a| a == first) {
            return Err(CapabilityError::Refused(format!(
                "`{first}` is not allowed as the first argument (allowed: {})",
                allow.join(", ")
            )));
        }
    }
    Ok(())
}

/// Runs the capability. Blocks the calling thread (an app's own thread) for
/// at most the capability's timeout.
pub fn run(spec: &CapabilitySpec, args: &[String], stdin: &[u8]) -> Result<Output, CapabilityError> {
    check(spec, args)?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(args).current_dir(&spec.dir).env_clear();
    for keep in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.env("LANG", "C").env("GIT_ALLOW_PROTOCOL", "file").env("GIT_TERMINAL_PROMPT", "0");
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        CapabilityError::Failed(format!("cannot run `{}` in {}: {e}", spec.program, spec.dir.display()))
    })?;
    let (Some(mut input), Some(out), Some(err)) = (child.stdin.take(), child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(CapabilityError::Failed("the program's pipes could not be set up".into()));
    };
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // A program that does not read its input closes the pipe: not an error.
        let _ = input.write_all(&stdin);
    });
    let err_reader = std::thread::spawn(move || read_capped(err));
    let out_reader = std::thread::spawn(move || read_capped(out));

    let deadline = Instant::now() + spec.timeout;
    let mut killed = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                killed = true;
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(CapabilityError::Failed(format!("waiting for `{}`: {e}", spec.program))),
        }
    };
    let _ = writer.join();
    let joined = |h: std::thread::JoinHandle<std::io::Result<(Vec<u8>, bool)>>| match h.join() {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(CapabilityError::Failed(format!("reading the program's output: {e}"))),
        Err(_) => Err(CapabilityError::Failed("reading the program's output failed".into())),
    };
    let (stdout, over_out) = joined(out_reader)?;
    let (mut stderr, over_err) = joined(err_reader)?;
    if over_out || over_err {
        return Err(CapabilityError::Failed(format!("`{}` wrote more than {MAX_OUTPUT} bytes", spec.program)));
    }
    if killed {
        stderr.extend_from_slice(format!("\nkilled after {:?} (capability timeout)", spec.timeout).as_bytes());
    }
    let status = if killed { -1 } else { status.and_then(|s| s.code()).unwrap_or(-1) };
    Ok(Output { status, stdout, stderr })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(program: &str, allow: Option<&[&str]>, timeout: Duration) -> CapabilitySpec {
        CapabilitySpec {
            program: program.into(),
            dir: std::env::temp_dir(),
            allow: allow.map(|a| a.iter().map(|s| s.to_string()).collect()),
            timeout,
        }
    }

    #[test]
    fn allow_list_guards_the_first_argument() {
        let git = spec("git", Some(&["bundle", "rev-parse"]), Duration::from_secs(5));
        assert!(check(&git, &["rev-parse".into(), "HEAD".into()]).is_ok());
        for bad in [vec!["-c", "core.pager=sh", "log"], vec!["push"], vec![]] {
            let args: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(matches!(check(&git, &args), Err(CapabilityError::Refused(_))), "{bad:?}");
        }
    }

    #[test]
    fn runs_with_stdin_and_a_clean_environment() {
        let sh = spec("sh", None, Duration::from_secs(10));
        let out = run(&sh, &["-c".into(), "cat; echo \"[$GIT_ALLOW_PROTOCOL]\" >&2; exit 3".into()], b"in").unwrap();
        assert_eq!((out.status, out.stdout.as_slice()), (3, b"in".as_slice()));
        assert_eq!(out.stderr, b"[file]\n");
    }

    #[test]
    fn a_slow_program_is_killed_at_its_timeout() {
        let sh = spec("sh", None, Duration::from_millis(200));
        let out = run(&sh, &["-c".into(), "sleep 30".into()], b"").unwrap();
        assert_eq!(out.status, -1);
        let missing = spec("/nonexistent/program", None, Duration::from_secs(1));
        assert!(matches!(run(&missing, &[], b""), Err(CapabilityError::Failed(_))));
    }
}
