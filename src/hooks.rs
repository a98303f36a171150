//! `pre_command` and `post_command`: the only shell the recipe keeps.
//!
//! A command runs through `/bin/sh -c` (`cmd /C` on Windows), so multi-line
//! commands and shell syntax work as in 6.0. The child inherits stdout and
//! stderr: its output appears live and as text (6.0 printed it afterwards as
//! a `b'...'` repr, see docs/scripts.rst), and the core prints nothing itself.
//! `/bin/sh` is named by its absolute path so that an empty `PATH` (cron)
//! still finds it.

use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Runs the configured shell commands. A trait so that the orchestration
/// tests can record the order instead of spawning shells.
pub trait Hooks {
    /// Run `command`; an empty command does nothing.
    ///
    /// # Errors
    /// [`Error::CommandFailed`] when it cannot start or exits non-zero.
    fn run(&self, command: &str) -> Result<()>;
}

/// The real hooks: the system shell.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShellHooks;

impl Hooks for ShellHooks {
    fn run(&self, command: &str) -> Result<()> {
        if command.trim().is_empty() {
            return Ok(());
        }
        log::debug!("Running command: {command}");
        let mut cmd = shell(command);
        cmd.stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        match cmd.status() {
            Ok(status) if status.success() => Ok(()),
            Ok(_) => Err(Error::CommandFailed {
                command: command.to_owned(),
            }),
            Err(e) => {
                log::error!("Could not start the shell for '{command}': {e}");
                Err(Error::CommandFailed {
                    command: command.to_owned(),
                })
            }
        }
    }
}

#[cfg(not(windows))]
fn shell(command: &str) -> Command {
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(command);
    c
}

#[cfg(windows)]
fn shell(command: &str) -> Command {
    let mut c = Command::new("cmd");
    c.arg("/C").arg(command);
    c
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn run_empty_is_noop() {
        assert!(ShellHooks.run("  \n").is_ok());
    }

    #[test]
    fn run_success_and_multiline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let cmd = format!("echo one > {0}\necho two >> {0}", out.display());
        assert!(ShellHooks.run(&cmd).is_ok());
        assert_eq!(
            std::fs::read_to_string(&out).ok().as_deref(),
            Some("one\ntwo\n")
        );
    }

    #[test]
    fn run_failure_names_the_command() {
        let e = ShellHooks.run("exit 3").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("command 'exit 3' failed. See message above.")
        );
    }
}
