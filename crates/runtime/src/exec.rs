//! Running extra processes in a running container (`runc exec`).

use std::process::Stdio;

use cove_model::Error;

use crate::{RunState, Runtime};

impl Runtime {
    /// Run `spec.cmd` inside the running container `id` with `runc exec` (the container's
    /// environment, overridden by `spec.env`; `spec.working_dir` or the container's), with
    /// stdout and stderr piped, and stdin piped when `spec.stdin` (else /dev/null). The
    /// child's exit code is the process's (128 + signal when killed). Must be called within
    /// a tokio runtime. Not running: `Error::conflict("container <id> is not running")`.
    pub fn exec(&self, id: &str, spec: &crate::ExecSpec) -> Result<tokio::process::Child, Error> {
        self.bundle_dir(id)?;
        if spec.cmd.is_empty() || spec.cmd[0].is_empty() {
            return Err(Error::invalid("no exec command specified"));
        }
        if let Some(wd) = &spec.working_dir {
            if !wd.starts_with('/') {
                return Err(Error::invalid(format!(
                    "the working directory '{wd}' is invalid, it needs to be an absolute path"
                )));
            }
        }
        for e in &spec.env {
            if !e.contains('=') || e.starts_with('=') {
                return Err(Error::invalid(format!("invalid environment variable: {e}")));
            }
        }
        if !matches!(self.state(id), RunState::Running { .. }) {
            return Err(Error::conflict(format!("container {id} is not running")));
        }
        let mut cmd = tokio::process::Command::new(self.runc()?);
        cmd.arg("--root").arg(self.runc_root()).arg("exec");
        for e in &spec.env {
            cmd.arg("--env").arg(e);
        }
        if let Some(wd) = &spec.working_dir {
            cmd.arg("--cwd").arg(wd);
        }
        cmd.arg(id).args(&spec.cmd);
        cmd.stdin(if spec.stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().map_err(|e| Error::internal(format!("exec in container {id}: {e}")))
    }
}
