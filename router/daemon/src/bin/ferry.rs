//! `ferry`, the command-line client of ferryd. Everything lives in
//! [`ferry_daemon::cli`]; this file only hands over the exit code.

fn main() -> std::process::ExitCode {
    ferry_daemon::cli::main()
}
