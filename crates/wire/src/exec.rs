//! `POST /containers/{id}/exec` and `POST /exec/{id}/start`.

use serde::{Deserialize, Serialize};

use crate::de::{is_false, nullable, str_or_vec};

/// `ExecConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecCreateRequest {
    /// Sent by the CLI when given (`-u`), not read by the API.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Refused by Cove.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_false")]
    pub privileged: bool,
    /// Allocate a TTY.
    #[serde(default, deserialize_with = "nullable")]
    pub tty: bool,
    /// Attach stdin.
    #[serde(default, deserialize_with = "nullable")]
    pub attach_stdin: bool,
    /// Sent by the CLI, not read by the API (stdout is always attached).
    #[serde(skip_deserializing)]
    pub attach_stdout: bool,
    /// Sent by the CLI, not read by the API (stderr is always attached).
    #[serde(skip_deserializing)]
    pub attach_stderr: bool,
    /// `K=V` entries.
    #[serde(default, deserialize_with = "nullable")]
    pub env: Vec<String>,
    /// The working directory (`""`: the container's).
    #[serde(default, deserialize_with = "nullable")]
    pub working_dir: String,
    /// The command: a string or a list (required).
    #[serde(default, deserialize_with = "str_or_vec")]
    pub cmd: Option<Vec<String>>,
}

/// `ExecStartConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecStartRequest {
    /// Run in the background.
    #[serde(default, deserialize_with = "nullable")]
    pub detach: bool,
    /// Raw output (no stream headers).
    #[serde(default, deserialize_with = "nullable")]
    pub tty: bool,
}
