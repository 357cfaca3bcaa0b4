//! `cove exec`: create an exec instance, start it on a hijacked connection, then report
//! its exit code.

use super::client::{encode, Client};
use super::hijack::hijack;
use super::value::Val;
use clap::Args;
use cove_wire::{ExecCreateRequest, ExecStartRequest};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY (accepted; output is not a TTY)
    #[arg(short = 't', long)]
    tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// Username or UID
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// CONTAINER COMMAND [ARG...]
    #[arg(required = true, num_args = 2.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "CONTAINER")]
    args: Vec<String>,
}

/// The `POST /containers/{c}/exec` body.
pub fn exec_body(a: &ExecArgs) -> ExecCreateRequest {
    ExecCreateRequest {
        attach_stdin: a.interactive && !a.detach,
        attach_stdout: !a.detach,
        attach_stderr: !a.detach,
        tty: false,
        cmd: Some(a.args[1..].to_vec()),
        env: a.env.clone(),
        working_dir: a.workdir.clone().unwrap_or_default(),
        user: a.user.clone(),
        privileged: false,
    }
}

pub async fn exec(client: &Client, a: ExecArgs) -> anyhow::Result<i32> {
    let container = encode(&a.args[0]);
    let created =
        client.post_json_val(&format!("/containers/{container}/exec"), &exec_body(&a)).await?;
    let id = created.get("Id").and_then(Val::as_str).unwrap_or_default().to_string();
    anyhow::ensure!(!id.is_empty(), "the daemon returned no exec id");
    if a.detach {
        client
            .post_json(&format!("/exec/{id}/start"), &ExecStartRequest { detach: true, tty: false })
            .await?;
        return Ok(0);
    }
    let conn = hijack(
        client,
        &format!("/exec/{id}/start"),
        &ExecStartRequest { detach: false, tty: false },
    )
    .await?;
    conn.pump(a.interactive, false).await?;
    // The stream ends when the process exits; the daemon may record the code a moment later.
    for _ in 0..40 {
        let info = client.get_val(&format!("/exec/{id}/json")).await?;
        let running = info.get("Running").is_some_and(Val::as_bool);
        if let (false, Some(code)) = (running, info.get("ExitCode").and_then(Val::as_i64)) {
            return Ok(code as i32);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("exec {id} did not report an exit code")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        a: ExecArgs,
    }

    #[test]
    fn body_and_parsing() {
        let t = T::try_parse_from(["exec", "-i", "-e", "A=1", "-w", "/tmp", "web", "ls", "-la"])
            .unwrap();
        assert_eq!(
            serde_json::to_value(exec_body(&t.a)).unwrap(),
            json!({"AttachStdin": true, "AttachStdout": true, "AttachStderr": true, "Tty": false,
                   "Cmd": ["ls", "-la"], "Env": ["A=1"], "WorkingDir": "/tmp"})
        );
        assert!(T::try_parse_from(["exec", "web"]).is_err());
    }
}
